//! `manager._core.scan`: the core scan run on its own thread while the
//! calling thread, holding the GIL only briefly, reports progress and
//! watches for Ctrl-C (which stops the scan).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use embedfleet_core::scan::{scan as core_scan, Progress, ScanError, ScanOptions, ScanOutcome};
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::records::{PlannedJob, SubredditScan};

/// How often progress is reported and signals are checked.
const TICK: Duration = Duration::from_millis(100);

fn to_py_err(e: ScanError) -> PyErr {
    match e {
        ScanError::NoInputTree(_) => PyFileNotFoundError::new_err(e.to_string()),
        ScanError::Unreadable(_) => PyOSError::new_err(e.to_string()),
        ScanError::Threads(_) => PyRuntimeError::new_err(e.to_string()),
    }
}

fn report(progress: Option<&Bound<'_, PyAny>>, p: &Progress) -> PyResult<()> {
    if let Some(cb) = progress {
        let done = p.dirs_done.load(Ordering::Relaxed);
        let total = p.dirs_total.load(Ordering::Relaxed);
        cb.call1((done, total, p.files_seen.load(Ordering::Relaxed)))?;
    }
    Ok(())
}

/// Scan and diff the input and output trees.
///
/// Returns a dict: `jobs` (`PlannedJob` records), `subreddits`
/// (`SubredditScan` records, by rank), `orphans`,
/// `temps` (the workers' hidden temporaries in the output tree), `issues`
/// (tuples `(path, problem)`), `stats` (dict) and `cancelled`.
/// `progress(dirs_done, dirs_total, files_seen)` is called about ten times a
/// second; an exception from it, or Ctrl-C, stops the scan and is raised.
#[pyfunction]
#[pyo3(signature = (
    input_root, output_root, model, *, rows_per_part, subreddits=None, use_cache=true, threads=0, progress=None
))]
#[allow(clippy::too_many_arguments)]
pub fn scan(
    py: Python<'_>,
    input_root: PathBuf,
    output_root: PathBuf,
    model: String,
    rows_per_part: u64,
    subreddits: Option<Vec<String>>,
    use_cache: bool,
    threads: usize,
    progress: Option<Bound<'_, PyAny>>,
) -> PyResult<PyObject> {
    let opts = ScanOptions {
        input_root,
        output_root,
        model,
        rows_per_part,
        subreddits,
        use_cache,
        threads,
    };
    let state = Arc::new(Progress::default());
    let (tx, rx) = mpsc::channel();
    let worker_state = Arc::clone(&state);
    let handle = std::thread::Builder::new()
        .name("embedfleet-scan".into())
        .spawn(move || {
            let _ = tx.send(core_scan(&opts, &worker_state));
        })
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start the scan thread: {e}")))?;
    let mut rx = rx;
    let outcome = loop {
        let (got, back) = py.allow_threads(move || (rx.recv_timeout(TICK), rx));
        rx = back;
        match got {
            Ok(r) => break r,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                let _ = py.allow_threads(move || handle.join());
                return Err(PyRuntimeError::new_err("the scan thread failed"));
            }
        }
        if let Err(e) = py
            .check_signals()
            .and_then(|_| report(progress.as_ref(), &state))
        {
            state.cancel.store(true, Ordering::Relaxed);
            let _ = py.allow_threads(move || handle.join());
            return Err(e);
        }
    };
    let _ = py.allow_threads(move || handle.join());
    let outcome = outcome.map_err(to_py_err)?;
    report(progress.as_ref(), &state)?;
    outcome_to_py(py, outcome)
}

fn outcome_to_py(py: Python<'_>, o: ScanOutcome) -> PyResult<PyObject> {
    let jobs: Vec<PlannedJob> = o.jobs.into_iter().map(PlannedJob::from).collect();
    let subs: Vec<SubredditScan> = o.subreddits.into_iter().map(SubredditScan::from).collect();
    let issues: Vec<(String, String)> = o.issues.into_iter().map(|i| (i.path, i.problem)).collect();
    let s = o.stats;
    let stats = PyDict::new(py);
    stats.set_item("dirs", s.dirs)?;
    stats.set_item("files", s.files)?;
    stats.set_item("output_footers_read", s.output_footers_read)?;
    stats.set_item("input_footers_read", s.input_footers_read)?;
    stats.set_item("cache_hits", s.cache_hits)?;
    stats.set_item("cache_load", s.cache_load.as_str())?;
    stats.set_item("cache_saved", s.cache_saved)?;
    stats.set_item("cache_error", s.cache_error)?;
    stats.set_item("seconds", s.seconds)?;
    let out = PyDict::new(py);
    out.set_item("jobs", jobs)?;
    out.set_item("subreddits", subs)?;
    out.set_item("orphans", o.orphans)?;
    out.set_item("temps", o.temps)?;
    out.set_item("issues", issues)?;
    out.set_item("stats", stats)?;
    out.set_item("cancelled", o.cancelled)?;
    Ok(out.into_any().unbind())
}
