//! `manager._core.enqueue`: Python `bus.messages.Job` objects to the core's
//! pipelined enqueue, with the GIL released while Redis works.

use std::time::Duration;

use embedfleet_core::constants::PROTOCOL_VERSION;
use embedfleet_core::scan::enqueue::{
    enqueue as core_enqueue, BusError, RedisTarget, DEFAULT_BATCH,
};
use embedfleet_core::Job;
use pyo3::exceptions::{PyConnectionError, PyRuntimeError};
use pyo3::intern;
use pyo3::prelude::*;

// The default is written out in the signature so that Python sees it
// (`inspect.signature`, the stub check); it must stay the core's.
const _: () = assert!(DEFAULT_BATCH == 2000);

fn to_py_err(e: BusError) -> PyErr {
    match e {
        BusError::Unavailable(_) => PyConnectionError::new_err(e.to_string()),
        BusError::Redis(_) => PyRuntimeError::new_err(e.to_string()),
    }
}

/// Read a `bus.messages.Job` (any object with its attributes).
fn job_of(o: &Bound<'_, PyAny>) -> PyResult<Job> {
    let py = o.py();
    Ok(Job {
        v: PROTOCOL_VERSION,
        id: o.getattr(intern!(py, "id"))?.extract()?,
        path: o.getattr(intern!(py, "path"))?.extract()?,
        out: o.getattr(intern!(py, "out"))?.extract()?,
        rows: o.getattr(intern!(py, "rows"))?.extract()?,
        fp: o.getattr(intern!(py, "fingerprint"))?.extract()?,
        model: o.getattr(intern!(py, "model"))?.extract()?,
        col: o.getattr(intern!(py, "column"))?.extract()?,
        idcol: o.getattr(intern!(py, "id_column"))?.extract()?,
        lane: o.getattr(intern!(py, "lane"))?.extract()?,
        attempt: o.getattr(intern!(py, "attempt"))?.extract()?,
    })
}

/// Enqueue jobs through `enqueue.lua` in pipelined batches; creates the
/// consumer group of every lane used. Returns `(new, existing)`. Raises
/// `ConnectionError` when Redis cannot be reached, `RuntimeError` on a Redis
/// error reply. The password never appears in a message.
#[pyfunction]
#[pyo3(signature = (
    jobs, *, namespace, host="127.0.0.1", port=6379, db=0, username=None, password=None, unix_socket=None,
    redo=false, batch=2000, timeout_s=10.0
))]
#[allow(clippy::too_many_arguments)]
pub fn enqueue(
    py: Python<'_>,
    jobs: &Bound<'_, PyAny>,
    namespace: &str,
    host: &str,
    port: u16,
    db: i64,
    username: Option<String>,
    password: Option<String>,
    unix_socket: Option<String>,
    redo: bool,
    batch: usize,
    timeout_s: f64,
) -> PyResult<(u64, u64)> {
    let jobs: Vec<Job> = jobs
        .try_iter()?
        .map(|o| job_of(&o?))
        .collect::<PyResult<_>>()?;
    let target = RedisTarget {
        host: host.to_string(),
        port,
        db,
        username,
        password,
        unix_socket,
        timeout: Duration::from_secs_f64(timeout_s.max(0.001)),
    };
    let counts = py
        .allow_threads(|| core_enqueue(&target, namespace, &jobs, redo, batch))
        .map_err(to_py_err)?;
    Ok((counts.new, counts.existing))
}
