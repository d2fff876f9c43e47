//! The manager's scan: from `<input-root>/chains/{suffix}/{subreddit}/*.parquet`
//! and what `<output-root>/embeddings/...` already holds, to exactly the jobs
//! still missing; then their pipelined, idempotent enqueue ([`enqueue`]).
//!
//! The walk is parallel (rayon): the suffix level, each `suffix/subreddit`
//! directory pair, and the stat and diff of the files of a large directory.
//! Up to date means the output exists and its footer says it was made from
//! the input's fingerprint (`"{size}-{mtime_ns}"`) with the same model; the
//! footer cache ([`cache`]) makes a re-scan read no footer at all. Problems
//! (unreadable directories, broken symlinks, symlinks that lead out of their
//! data root, files named `.parquet` that are not Parquet, permission errors)
//! become [`Issue`]s with their path, and the scan goes on. The workers'
//! hidden temporary files in the output tree are no outputs: they are listed
//! apart ([`ScanOutcome::temps`]).

pub mod cache;
mod diff;
mod discover;
pub mod enqueue;
pub mod footer;
pub mod names;
mod pair;
pub mod split;
#[cfg(test)]
mod tests;
pub mod walk;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use rayon::prelude::*;
use thiserror::Error;

pub use cache::{CacheLoad, FooterCache, CACHE_DIR, CACHE_FILE};
use discover::{discover, DirPair, Roots, Tree};
use pair::{scan_pair, PairCtx, PairResult};
pub use walk::Stamp;

use crate::constants::{INPUT_DIR, OUTPUT_DIR};

/// Something wrong with one path; the scan reports it and goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub path: String,
    pub problem: String,
}

impl Issue {
    pub fn new(path: &Path, problem: String) -> Issue {
        Issue {
            path: path.display().to_string(),
            problem,
        }
    }
}

/// What to scan and how.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    pub input_root: PathBuf,
    pub output_root: PathBuf,
    /// Model id every output must have been made with.
    pub model: String,
    /// Files with more rows are split into row-range jobs; 0 never splits.
    pub rows_per_part: u64,
    /// The checkpoint: only these subreddits, in this order.
    pub subreddits: Option<Vec<String>>,
    /// Read and write `<output-root>/.embedfleet/scan-cache.bin`.
    pub use_cache: bool,
    /// Worker threads; 0 takes one per core.
    pub threads: usize,
}

/// Shared with the caller while a scan runs: progress, and a way to stop it.
#[derive(Debug, Default)]
pub struct Progress {
    pub dirs_total: AtomicU64,
    pub dirs_done: AtomicU64,
    pub files_seen: AtomicU64,
    pub cancel: AtomicBool,
}

/// One job the scan found missing (the fields a `Job` is made of).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedJob {
    /// Rank of its subreddit (index into [`ScanOutcome::subreddits`]).
    pub rank: usize,
    pub id: String,
    pub path: String,
    pub out: String,
    pub rows: Option<(u64, u64)>,
    pub fingerprint: String,
    /// Input bytes the job covers (for size-based lane routing).
    pub bytes: u64,
}

/// Per-subreddit counts of the diff. Files are inputs; `split_parts` and
/// `jobs` count planned jobs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubredditCounts {
    pub name: String,
    pub files: u64,
    pub up_to_date: u64,
    pub missing: u64,
    pub modified: u64,
    pub split_parts: u64,
    pub jobs: u64,
    pub orphans: u64,
    pub errors: u64,
}

impl SubredditCounts {
    fn add(&mut self, o: &SubredditCounts) {
        self.files += o.files;
        self.up_to_date += o.up_to_date;
        self.missing += o.missing;
        self.modified += o.modified;
        self.split_parts += o.split_parts;
        self.jobs += o.jobs;
        self.orphans += o.orphans;
        self.errors += o.errors;
    }
}

/// How the scan went.
#[derive(Debug, Clone)]
pub struct ScanStats {
    pub dirs: u64,
    pub files: u64,
    pub output_footers_read: u64,
    pub input_footers_read: u64,
    pub cache_hits: u64,
    pub cache_load: CacheLoad,
    pub cache_saved: bool,
    pub cache_error: Option<String>,
    pub seconds: f64,
}

/// Everything a scan found.
#[derive(Debug, Clone)]
pub struct ScanOutcome {
    /// Sorted by subreddit rank, suffix, file name, row range.
    pub jobs: Vec<PlannedJob>,
    /// By rank: checkpoint order, else sorted by name.
    pub subreddits: Vec<SubredditCounts>,
    /// Outputs whose input vanished, relative to the output root.
    pub orphans: Vec<String>,
    /// The workers' hidden temporary files in the output tree, relative to
    /// the output root, sorted: being written, or left by a killed worker
    /// (workers remove their own). Ignored otherwise.
    pub temps: Vec<String>,
    /// Sorted by path.
    pub issues: Vec<Issue>,
    pub stats: ScanStats,
    /// The scan was stopped through [`Progress::cancel`]: results are partial.
    pub cancelled: bool,
}

/// Why a scan could not run at all.
#[derive(Debug, Error)]
pub enum ScanError {
    #[error("{0}: no such directory (inputs live in <input-root>/{INPUT_DIR}/<suffix>/<subreddit>/*.parquet)")]
    NoInputTree(String),
    #[error("{}: {}", .0.path, .0.problem)]
    Unreadable(Issue),
    #[error("cannot start scan threads: {0}")]
    Threads(String),
}

/// Path of the footer cache under an output root.
pub fn cache_path(output_root: &Path) -> PathBuf {
    output_root.join(CACHE_DIR).join(CACHE_FILE)
}

/// Scan and diff the trees. Blocks; `progress` may be watched from another
/// thread meanwhile.
pub fn scan(opts: &ScanOptions, progress: &Progress) -> Result<ScanOutcome, ScanError> {
    let chains = opts.input_root.join(INPUT_DIR);
    if !chains.is_dir() {
        return Err(ScanError::NoInputTree(chains.display().to_string()));
    }
    let input_root = canonical(&opts.input_root);
    if let Some(issue) = leaves(&chains, &input_root) {
        return Err(ScanError::Unreadable(issue));
    }
    let output_root = canonical(&opts.output_root);
    if let Some(issue) = leaves(&opts.output_root.join(OUTPUT_DIR), &output_root) {
        return Err(ScanError::Unreadable(issue));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .thread_name(|i| format!("embedfleet-scan-{i}"))
        .build()
        .map_err(|e| ScanError::Threads(e.to_string()))?;
    let roots = Roots {
        input: &input_root,
        output: &output_root,
    };
    pool.install(|| scan_in_pool(opts, progress, &chains, roots))
}

/// `path` with every symlink resolved; as given when it does not exist (yet).
fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// An issue when the existing directory `dir` resolves outside `root`.
fn leaves(dir: &Path, root: &Path) -> Option<Issue> {
    let real = std::fs::canonicalize(dir).ok()?;
    (!real.starts_with(root)).then(|| {
        let problem = format!(
            "symlink leads out of the data root {} (to {})",
            root.display(),
            real.display()
        );
        Issue::new(dir, problem)
    })
}

fn scan_in_pool(
    opts: &ScanOptions,
    progress: &Progress,
    chains: &Path,
    roots: Roots<'_>,
) -> Result<ScanOutcome, ScanError> {
    let t0 = Instant::now();
    let mut issues = Vec::new();
    let embeddings = opts.output_root.join(OUTPUT_DIR);
    let tree = discover(
        chains,
        &embeddings,
        roots,
        opts.subreddits.as_deref(),
        &mut issues,
    )
    .map_err(ScanError::Unreadable)?;
    progress
        .dirs_total
        .store(tree.pairs.len() as u64, Ordering::Relaxed);
    let root = opts.input_root.display().to_string();
    let (cache, cache_load) = if opts.use_cache {
        FooterCache::load(&cache_path(&opts.output_root), &root)
    } else {
        (FooterCache::empty(&root), CacheLoad::Disabled)
    };
    let ctx = PairCtx {
        input_root: &opts.input_root,
        output_root: &opts.output_root,
        roots,
        model: &opts.model,
        rows_per_part: opts.rows_per_part,
        cache: &cache,
    };
    let results = scan_pairs(&ctx, &tree.pairs, progress);
    let (mut out, scanned) = assemble(&tree, results, issues);
    out.stats.output_footers_read = cache.output_footers_read.load(Ordering::Relaxed);
    out.stats.input_footers_read = cache.input_footers_read.load(Ordering::Relaxed);
    out.stats.cache_hits = cache.hits.load(Ordering::Relaxed);
    out.stats.cache_load = cache_load;
    if opts.use_cache && !out.cancelled {
        let path = cache_path(&opts.output_root);
        match cache.save(&path, &scanned) {
            Ok(saved) => out.stats.cache_saved = saved,
            Err(e) => out.stats.cache_error = Some(format!("{}: {e}", path.display())),
        }
    }
    out.stats.seconds = t0.elapsed().as_secs_f64();
    Ok(out)
}

/// Scan every pair in parallel; `None` for the pairs skipped after a cancel.
fn scan_pairs(
    ctx: &PairCtx<'_>,
    pairs: &[DirPair],
    progress: &Progress,
) -> Vec<Option<PairResult>> {
    pairs
        .par_iter()
        .map(|p| {
            if progress.cancel.load(Ordering::Relaxed) {
                return None;
            }
            let r = scan_pair(ctx, p);
            progress
                .files_seen
                .fetch_add(r.counts.files, Ordering::Relaxed);
            progress.dirs_done.fetch_add(1, Ordering::Relaxed);
            Some(r)
        })
        .collect()
}

/// Gather the pairs' results in scan order; also returns the directories
/// listed completely (the cache may forget what they no longer hold).
fn assemble(
    tree: &Tree,
    results: Vec<Option<PairResult>>,
    issues: Vec<Issue>,
) -> (ScanOutcome, HashSet<String>) {
    let mut out = ScanOutcome {
        jobs: Vec::new(),
        subreddits: tree
            .subreddits
            .iter()
            .map(|n| SubredditCounts {
                name: n.clone(),
                ..Default::default()
            })
            .collect(),
        orphans: Vec::new(),
        temps: Vec::new(),
        issues,
        stats: ScanStats {
            dirs: tree.pairs.len() as u64,
            files: 0,
            output_footers_read: 0,
            input_footers_read: 0,
            cache_hits: 0,
            cache_load: CacheLoad::Disabled,
            cache_saved: false,
            cache_error: None,
            seconds: 0.0,
        },
        cancelled: results.iter().any(Option::is_none),
    };
    let mut scanned = HashSet::new();
    for (pair, r) in tree.pairs.iter().zip(results) {
        let Some(r) = r else { continue };
        if r.complete {
            scanned.insert(format!("{}/{}", pair.suffix, pair.subreddit));
        }
        out.subreddits[pair.rank].add(&r.counts);
        out.stats.files += r.counts.files;
        out.jobs.extend(r.jobs);
        out.orphans.extend(r.orphans);
        out.temps.extend(r.temps);
        out.issues.extend(r.issues);
    }
    out.issues
        .sort_by(|a, b| (&a.path, &a.problem).cmp(&(&b.path, &b.problem)));
    (out, scanned)
}
