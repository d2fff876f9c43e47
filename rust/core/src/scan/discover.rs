//! The directory pairs to scan: every `<suffix>/<subreddit>` present under
//! `<input-root>/chains` or `<output-root>/embeddings` (the latter for
//! orphans), restricted to and ordered by the subreddit checkpoint if any.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use rayon::prelude::*;

use super::walk::subdirs;
use super::Issue;

/// One `<suffix>/<subreddit>` directory of the input tree and its mirror in
/// the output tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirPair {
    /// Position of the subreddit in the scan's order.
    pub rank: usize,
    pub suffix: String,
    pub subreddit: String,
}

/// The pairs, sorted by (subreddit rank, suffix), and the subreddit names by
/// rank.
pub struct Tree {
    pub pairs: Vec<DirPair>,
    pub subreddits: Vec<String>,
}

/// Subreddit directories of one suffix in the input and the output tree.
struct SuffixDirs {
    suffix: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
}

/// The canonical data roots: a symlink is followed only inside its own.
#[derive(Clone, Copy)]
pub struct Roots<'a> {
    pub input: &'a Path,
    pub output: &'a Path,
}

fn list_suffix(
    chains: &Path,
    embeddings: &Path,
    roots: Roots<'_>,
    suffix: &str,
    in_exists: bool,
) -> (SuffixDirs, Vec<Issue>) {
    let mut issues = Vec::new();
    let mut dirs = SuffixDirs {
        suffix: suffix.to_string(),
        inputs: Vec::new(),
        outputs: Vec::new(),
    };
    let mut input_known = true;
    if in_exists {
        match subdirs(&chains.join(suffix), roots.input, &mut issues) {
            Ok(found) => dirs.inputs = found.unwrap_or_default(),
            Err(issue) => {
                issues.push(issue);
                input_known = false;
            }
        }
    }
    match subdirs(&embeddings.join(suffix), roots.output, &mut issues) {
        Ok(found) => dirs.outputs = found.unwrap_or_default(),
        Err(issue) => issues.push(issue),
    }
    if !input_known {
        // Nothing is known about these inputs: their outputs are not orphans.
        dirs.outputs.retain(|s| dirs.inputs.contains(s));
    }
    (dirs, issues)
}

/// Discover the pairs. `Err` only when `chains` itself cannot be listed.
pub fn discover(
    chains: &Path,
    embeddings: &Path,
    roots: Roots<'_>,
    checkpoint: Option<&[String]>,
    issues: &mut Vec<Issue>,
) -> Result<Tree, Issue> {
    let in_suffixes = subdirs(chains, roots.input, issues)?.unwrap_or_default();
    let out_suffixes = match subdirs(embeddings, roots.output, issues) {
        Ok(found) => found.unwrap_or_default(),
        Err(issue) => {
            issues.push(issue);
            Vec::new()
        }
    };
    let all: BTreeSet<&String> = in_suffixes.iter().chain(out_suffixes.iter()).collect();
    let listed: Vec<(SuffixDirs, Vec<Issue>)> = all
        .into_par_iter()
        .map(|s| list_suffix(chains, embeddings, roots, s, in_suffixes.contains(s)))
        .collect();
    let mut per_suffix = Vec::with_capacity(listed.len());
    for (dirs, found) in listed {
        issues.extend(found);
        per_suffix.push(dirs);
    }
    let subreddits: Vec<String> = match checkpoint {
        Some(names) => {
            let mut seen = BTreeSet::new();
            names
                .iter()
                .filter(|n| seen.insert(n.as_str()))
                .cloned()
                .collect()
        }
        None => {
            let set: BTreeSet<&String> = per_suffix
                .iter()
                .flat_map(|d| d.inputs.iter().chain(&d.outputs))
                .collect();
            set.into_iter().cloned().collect()
        }
    };
    let rank: HashMap<&str, usize> = subreddits
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i))
        .collect();
    let mut pairs = Vec::new();
    for d in &per_suffix {
        let names: BTreeSet<&String> = d.inputs.iter().chain(&d.outputs).collect();
        for sub in names {
            if let Some(&r) = rank.get(sub.as_str()) {
                pairs.push(DirPair {
                    rank: r,
                    suffix: d.suffix.clone(),
                    subreddit: sub.clone(),
                });
            }
        }
    }
    pairs.sort_by(|a, b| (a.rank, &a.suffix).cmp(&(b.rank, &b.suffix)));
    if checkpoint.is_some() {
        let found: BTreeSet<usize> = pairs.iter().map(|p| p.rank).collect();
        for (i, name) in subreddits.iter().enumerate() {
            if !found.contains(&i) {
                let problem = format!("subreddit '{name}' is in the checkpoint list but has no directory under any suffix");
                issues.push(Issue::new(chains, problem));
            }
        }
    }
    Ok(Tree { pairs, subreddits })
}
