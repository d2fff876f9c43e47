//! One `<suffix>/<subreddit>` directory pair: list both sides, match every
//! output to its input, diff each input (in parallel), and turn what it
//! needs into jobs.

use std::path::Path;

use rayon::prelude::*;

use super::diff::{diff_input, DiffCtx, OutputFile, Status, Verdict};
use super::discover::{DirPair, Roots};
use super::names::parse_part;
use super::walk::{parquet_files, FileStat, Listing};
use super::{FooterCache, Issue, PlannedJob, SubredditCounts};
use crate::constants::{INPUT_DIR, OUTPUT_DIR};
use crate::job::{job_id, output_path};

/// What one pair contributes to the scan.
#[derive(Debug, Default)]
pub struct PairResult {
    pub counts: SubredditCounts,
    pub jobs: Vec<PlannedJob>,
    pub orphans: Vec<String>,
    /// The workers' temporaries in the output directory (relative to the output root).
    pub temps: Vec<String>,
    pub issues: Vec<Issue>,
    /// Both listings were complete, so the cache may forget what they lack.
    pub complete: bool,
}

/// Settings shared by every pair.
pub struct PairCtx<'a> {
    pub input_root: &'a Path,
    pub output_root: &'a Path,
    /// Canonical roots: symlinks are followed only inside them.
    pub roots: Roots<'a>,
    pub model: &'a str,
    pub rows_per_part: u64,
    pub cache: &'a FooterCache,
}

/// Outputs grouped by the index of the input they belong to (sorted by it),
/// and the orphans.
fn match_outputs(inputs: &Listing, outputs: Listing) -> (Vec<(usize, OutputFile)>, Vec<String>) {
    let mut owned = Vec::with_capacity(outputs.files.len());
    let mut orphans = Vec::new();
    for f in outputs.files {
        // An input named exactly like the output wins over a part reading.
        let owner = match inputs.find(&f.name) {
            Some(i) => Some((Some(i), None)),
            None if inputs.contains(&f.name) => Some((None, None)),
            None => parse_part(&f.name)
                .filter(|(input, _)| inputs.contains(input))
                .map(|(input, rows)| (inputs.find(&input), Some(rows))),
        };
        match owner {
            Some((Some(i), rows)) => owned.push((
                i,
                OutputFile {
                    name: f.name,
                    stamp: f.stamp,
                    rows,
                },
            )),
            // The input exists but is unreadable: it is reported, its outputs kept.
            Some((None, _)) => {}
            // With the input directory unreadable nothing is known: no orphan.
            None if !inputs.unreadable => orphans.push(f.name),
            None => {}
        }
    }
    owned.sort_by_key(|(i, _)| *i);
    (owned, orphans)
}

/// The outputs of input `i` from [`match_outputs`]'s sorted list.
fn outputs_of(owned: &[(usize, OutputFile)], i: usize) -> Vec<OutputFile> {
    let start = owned.partition_point(|(j, _)| *j < i);
    owned[start..]
        .iter()
        .take_while(|(j, _)| *j == i)
        .map(|(_, o)| o.clone())
        .collect()
}

/// What one input contributes: its verdict and the jobs it needs.
struct InputResult {
    status: Status,
    jobs: Vec<PlannedJob>,
    issues: Vec<Issue>,
}

/// Diff one input and turn what it needs into jobs (ids and output paths as
/// `Job::create` derives them).
fn plan_input(
    dctx: &DiffCtx<'_>,
    pair: &DirPair,
    in_rel: &str,
    f: &FileStat,
    outputs: &[OutputFile],
) -> InputResult {
    let Verdict {
        status,
        jobs: needed,
        mut issues,
    } = diff_input(dctx, f, outputs);
    let mut jobs = Vec::with_capacity(needed.len());
    if !needed.is_empty() {
        let path = format!("{in_rel}/{}", f.name);
        let fp = f.stamp.fingerprint();
        for j in needed {
            match output_path(&path, j.rows) {
                Ok(out) => jobs.push(PlannedJob {
                    rank: pair.rank,
                    id: job_id(&path, j.rows, &fp, dctx.model),
                    path: path.clone(),
                    out,
                    rows: j.rows,
                    fingerprint: fp.clone(),
                    bytes: j.bytes,
                }),
                Err(e) => issues.push(Issue::new(&dctx.in_dir.join(&f.name), e.to_string())),
            }
        }
    }
    InputResult {
        status,
        jobs,
        issues,
    }
}

pub fn scan_pair(ctx: &PairCtx<'_>, pair: &DirPair) -> PairResult {
    let in_rel = format!("{INPUT_DIR}/{}/{}", pair.suffix, pair.subreddit);
    let out_rel = format!("{OUTPUT_DIR}/{}/{}", pair.suffix, pair.subreddit);
    let in_dir = ctx.input_root.join(&in_rel);
    let out_dir = ctx.output_root.join(&out_rel);
    let (inputs, outputs) = rayon::join(
        || parquet_files(&in_dir, ctx.roots.input),
        || parquet_files(&out_dir, ctx.roots.output),
    );
    let mut res = PairResult {
        complete: !inputs.unreadable && !outputs.unreadable,
        ..Default::default()
    };
    res.issues.extend(inputs.issues.iter().cloned());
    res.issues.extend(outputs.issues.iter().cloned());
    res.temps = outputs
        .temps
        .iter()
        .map(|n| format!("{out_rel}/{n}"))
        .collect();
    let (owned, orphans) = match_outputs(&inputs, outputs);
    res.orphans = orphans
        .into_iter()
        .map(|n| format!("{out_rel}/{n}"))
        .collect();
    let dir_key = format!("{}/{}", pair.suffix, pair.subreddit);
    let dctx = DiffCtx {
        model: ctx.model,
        rows_per_part: ctx.rows_per_part,
        cache: ctx.cache.dir(&dir_key),
        in_dir: &in_dir,
        out_dir: &out_dir,
    };
    let planned: Vec<InputResult> = inputs
        .files
        .par_iter()
        .enumerate()
        .map(|(i, f)| plan_input(&dctx, pair, &in_rel, f, &outputs_of(&owned, i)))
        .collect();
    for r in planned {
        res.counts.files += 1;
        match r.status {
            Status::UpToDate => res.counts.up_to_date += 1,
            Status::Missing => res.counts.missing += 1,
            Status::Modified => res.counts.modified += 1,
            Status::Unreadable => {}
        }
        res.issues.extend(r.issues);
        res.jobs.extend(r.jobs);
    }
    res.counts.split_parts = res.jobs.iter().filter(|j| j.rows.is_some()).count() as u64;
    res.counts.jobs = res.jobs.len() as u64;
    res.counts.orphans = res.orphans.len() as u64;
    res.counts.errors = res.issues.len() as u64;
    res
}
