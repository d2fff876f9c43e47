//! embedfleet's pure-Rust core: the job-bus protocol (constants, keys, job
//! messages, Lua scripts) shared by the manager's Python extension and the
//! Rust worker. `docs/protocol.md` is the specification; `bus/` is the Python
//! twin, and `tests/vectors/` pins both to the same behaviour. [`scan`] is the
//! manager's scan, diff and enqueue.

pub mod constants;
pub mod error;
pub mod job;
pub mod keys;
pub mod scan;
pub mod scripts;
pub mod wire;

pub use error::CoreError;
pub use job::{check_relative, job_id, output_path, Job};
pub use keys::Keys;
pub use scan::{scan, PlannedJob, ScanOptions, ScanOutcome};
