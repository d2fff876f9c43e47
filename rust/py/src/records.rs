//! The named records `manager._core.scan` returns: one per planned job and
//! one per subreddit, instead of bare tuples. Frozen, compared by value, and
//! constructible from Python so the pure-Python scanner (the tests' oracle,
//! `tests/support/pyscan.py`) returns the very same records.

use embedfleet_core::scan::{PlannedJob as CoreJob, SubredditCounts as CoreCounts};
use pyo3::prelude::*;

/// One job the scan found missing: where its input and output are, what it
/// was made from, and its subreddit's rank in the scan order.
#[pyclass(module = "manager._core", frozen, eq, hash, get_all)]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PlannedJob {
    /// Index of the job's subreddit in the scan's `subreddits`.
    pub rank: usize,
    /// The protocol's job id.
    pub id: String,
    /// Input path, relative to the input root.
    pub path: String,
    /// Output path, relative to the output root.
    pub out: String,
    /// The input's fingerprint, `"{size}-{mtime_ns}"`.
    pub fingerprint: String,
    /// The row range `(start, end)` of a split input; `None` for the whole file.
    pub rows: Option<(u64, u64)>,
    /// Compressed bytes of the job's row groups (the whole file when not split).
    pub bytes: u64,
}

#[pymethods]
impl PlannedJob {
    #[new]
    #[pyo3(signature = (rank, id, path, out, fingerprint, rows, bytes))]
    fn new(
        rank: usize,
        id: String,
        path: String,
        out: String,
        fingerprint: String,
        rows: Option<(u64, u64)>,
        bytes: u64,
    ) -> Self {
        PlannedJob {
            rank,
            id,
            path,
            out,
            fingerprint,
            rows,
            bytes,
        }
    }

    fn __repr__(&self) -> String {
        let rows = match self.rows {
            Some((s, e)) => format!("({s}, {e})"),
            None => "None".to_string(),
        };
        format!(
            "PlannedJob(rank={}, id={:?}, path={:?}, out={:?}, fingerprint={:?}, rows={}, bytes={})",
            self.rank, self.id, self.path, self.out, self.fingerprint, rows, self.bytes
        )
    }
}

impl From<CoreJob> for PlannedJob {
    fn from(j: CoreJob) -> Self {
        PlannedJob {
            rank: j.rank,
            id: j.id,
            path: j.path,
            out: j.out,
            fingerprint: j.fingerprint,
            rows: j.rows,
            bytes: j.bytes,
        }
    }
}

/// What the diff found for one subreddit, over all suffixes: `files` are
/// inputs; `split_parts` and `jobs` count planned jobs.
#[pyclass(module = "manager._core", frozen, eq, hash, get_all)]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SubredditScan {
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

#[pymethods]
impl SubredditScan {
    #[new]
    #[pyo3(signature = (
        name, files, up_to_date, missing, modified, split_parts, jobs, orphans, errors
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        name: String,
        files: u64,
        up_to_date: u64,
        missing: u64,
        modified: u64,
        split_parts: u64,
        jobs: u64,
        orphans: u64,
        errors: u64,
    ) -> Self {
        SubredditScan {
            name,
            files,
            up_to_date,
            missing,
            modified,
            split_parts,
            jobs,
            orphans,
            errors,
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "SubredditScan(name={:?}, files={}, up_to_date={}, missing={}, modified={}, split_parts={}, \
             jobs={}, orphans={}, errors={})",
            self.name,
            self.files,
            self.up_to_date,
            self.missing,
            self.modified,
            self.split_parts,
            self.jobs,
            self.orphans,
            self.errors
        )
    }
}

impl From<CoreCounts> for SubredditScan {
    fn from(c: CoreCounts) -> Self {
        SubredditScan {
            name: c.name,
            files: c.files,
            up_to_date: c.up_to_date,
            missing: c.missing,
            modified: c.modified,
            split_parts: c.split_parts,
            jobs: c.jobs,
            orphans: c.orphans,
            errors: c.errors,
        }
    }
}
