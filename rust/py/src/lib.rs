//! `manager._core`: the manager's private compiled module, a thin layer over
//! `embedfleet-core` (like `pydantic_core._pydantic_core`). The Python API
//! over it is `manager.scan`; the stub is `manager/_core.pyi`.

use pyo3::prelude::*;

mod enqueue_py;
mod records;
mod scan_py;

/// Job id derivation, exposed so Python can check it against the core.
#[pyfunction]
#[pyo3(signature = (path, rows, fingerprint, model))]
fn job_id(path: &str, rows: Option<(u64, u64)>, fingerprint: &str, model: &str) -> String {
    embedfleet_core::job_id(path, rows, fingerprint, model)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("CACHE_DIR", embedfleet_core::scan::CACHE_DIR)?;
    m.add("CACHE_FILE", embedfleet_core::scan::CACHE_FILE)?;
    m.add_class::<records::PlannedJob>()?;
    m.add_class::<records::SubredditScan>()?;
    m.add_function(wrap_pyfunction!(job_id, m)?)?;
    m.add_function(wrap_pyfunction!(scan_py::scan, m)?)?;
    m.add_function(wrap_pyfunction!(enqueue_py::enqueue, m)?)?;
    Ok(())
}
