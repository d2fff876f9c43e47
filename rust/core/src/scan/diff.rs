//! The diff of one input against the outputs found for it: up to date,
//! missing or modified, and the jobs it still needs.
//!
//! - A whole-file output made from this fingerprint with this model makes
//!   the input up to date; so do fresh part outputs that tile all its rows
//!   (whatever `rows_per_part` was when they were made).
//! - Otherwise the input's footer gives its row groups (read only here, for
//!   inputs that need work, and cached), the split policy gives the planned
//!   jobs, and every planned job whose own output is fresh is dropped.
//! - Status: `Modified` when some output of the input was made from another
//!   fingerprint or model (or is unreadable), else `Missing`.

use std::borrow::Cow;
use std::path::Path;

use super::cache::DirCache;
use super::footer::{self, Provenance, RowGroup};
use super::split::{plan_parts, tiles};
use super::walk::{FileStat, Stamp};
use super::Issue;

/// Verdict on one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    UpToDate,
    Missing,
    Modified,
    /// Its footer could not be read: reported, no job.
    Unreadable,
}

/// An output file found for an input: the whole-file one (`rows: None`) or
/// a part.
#[derive(Debug, Clone)]
pub struct OutputFile {
    pub name: String,
    pub stamp: Stamp,
    pub rows: Option<(u64, u64)>,
}

/// A job an input still needs: its row range and its size for routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeededJob {
    pub rows: Option<(u64, u64)>,
    pub bytes: u64,
}

#[derive(Debug)]
pub struct Verdict {
    pub status: Status,
    pub jobs: Vec<NeededJob>,
    pub issues: Vec<Issue>,
}

/// Where one directory pair lives, and the scan's settings.
pub struct DiffCtx<'a> {
    pub model: &'a str,
    pub rows_per_part: u64,
    pub cache: DirCache<'a>,
    pub in_dir: &'a Path,
    pub out_dir: &'a Path,
}

impl<'a> DiffCtx<'a> {
    fn provenance(&self, o: &OutputFile) -> Result<Cow<'a, Provenance>, String> {
        self.cache.output(&o.name, o.stamp, || {
            let md = footer::read_metadata(&self.out_dir.join(&o.name), o.stamp.size)?;
            footer::provenance(&md)
        })
    }

    fn layout(&self, f: &FileStat) -> Result<Cow<'a, [RowGroup]>, String> {
        self.cache.input(&f.name, f.stamp, || {
            footer::read_metadata(&self.in_dir.join(&f.name), f.stamp.size)
                .map(|md| footer::row_groups(&md))
        })
    }
}

/// Diff one input against its outputs.
pub fn diff_input(ctx: &DiffCtx<'_>, input: &FileStat, outputs: &[OutputFile]) -> Verdict {
    let fp = input.stamp.fingerprint();
    let mut issues = Vec::new();
    let fresh: Vec<(Option<(u64, u64)>, bool)> = outputs
        .iter()
        .map(|o| match ctx.provenance(o) {
            Ok(p) => (o.rows, p.fingerprint == fp && &*p.model == ctx.model),
            Err(problem) => {
                let path = ctx.out_dir.join(&o.name);
                issues.push(Issue::new(
                    &path,
                    format!("{problem}; its job will be redone"),
                ));
                (o.rows, false)
            }
        })
        .collect();
    let up_to_date = |issues| Verdict {
        status: Status::UpToDate,
        jobs: Vec::new(),
        issues,
    };
    if fresh.iter().any(|&(rows, ok)| ok && rows.is_none()) {
        return up_to_date(issues);
    }
    let groups = match ctx.layout(input) {
        Ok(g) => g,
        Err(problem) => {
            issues.push(Issue::new(&ctx.in_dir.join(&input.name), problem));
            return Verdict {
                status: Status::Unreadable,
                jobs: Vec::new(),
                issues,
            };
        }
    };
    let total: u64 = groups.iter().map(|g| g.rows).sum();
    let mut fresh_parts: Vec<(u64, u64)> =
        fresh.iter().filter(|f| f.1).filter_map(|f| f.0).collect();
    if tiles(&mut fresh_parts, total) {
        return up_to_date(issues);
    }
    let parts = plan_parts(&groups, ctx.rows_per_part);
    let planned: Vec<NeededJob> = if parts.is_empty() {
        vec![NeededJob {
            rows: None,
            bytes: input.stamp.size,
        }]
    } else {
        parts
            .iter()
            .map(|p| NeededJob {
                rows: Some((p.start, p.end)),
                bytes: p.bytes,
            })
            .collect()
    };
    let done = |j: &NeededJob| match j.rows {
        Some(r) => fresh_parts.binary_search(&r).is_ok(),
        None => false,
    };
    let jobs: Vec<NeededJob> = planned.into_iter().filter(|j| !done(j)).collect();
    if jobs.is_empty() {
        return up_to_date(issues);
    }
    let status = if fresh.iter().any(|f| !f.1) {
        Status::Modified
    } else {
        Status::Missing
    };
    Verdict {
        status,
        jobs,
        issues,
    }
}
