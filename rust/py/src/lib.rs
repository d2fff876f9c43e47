//! `manager._core`: the manager's private compiled module, a thin layer over
//! `embedfleet-core` (like `pydantic_core._pydantic_core`).

use pyo3::prelude::*;

/// Job id derivation, exposed so Python can check it against the core.
#[pyfunction]
#[pyo3(signature = (path, rows, fingerprint, model))]
fn job_id(path: &str, rows: Option<(u64, u64)>, fingerprint: &str, model: &str) -> String {
    embedfleet_core::job_id(path, rows, fingerprint, model)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(job_id, m)?)?;
    Ok(())
}
