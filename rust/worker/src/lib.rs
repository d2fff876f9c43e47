//! embedfleet's Rust worker: claims embedding jobs from the Redis bus, reads
//! each job's rows with arrow-rs, embeds them with all-MiniLM-L6-v2 through
//! ONNX Runtime (loaded at run time from the `onnxruntime` wheel's library)
//! and writes the output atomically, interchangeable with the Python
//! worker's.
//!
//! Modules: `bus` (the Redis side of the protocol: claim, lease, complete,
//! retry, dead letters, registry, controls, events), `runtime` (the worker
//! loop: signals, watchdog, heartbeats, backoff), `pipeline` (one job: read,
//! clean, deduplicate, embed, write) over `input`, `clean`, `output`,
//! `paths`; `model` (tokenizer + ONNX session), `locate` (where ONNX Runtime and
//! the model are found) and `batching`; `textkey`
//! and `reuse` (a text's identity and the fleet's reuse store); `limits`
//! (memory and open-file ceilings); `settings` (Redis URL, redaction).

pub mod batching;
pub mod bus;
pub mod clean;
pub mod cli;
pub mod error;
pub mod faults;
pub mod input;
pub mod input_raw;
pub mod keeper;
pub mod limits;
pub mod locate;
pub mod logging;
pub mod model;
pub mod output;
pub mod paths;
pub mod pipeline;
pub mod reuse;
pub mod runtime;
pub mod settings;
pub mod stand_in;
pub mod supervision;
pub mod textkey;
pub mod tokenize;

/// `worker_kind` this worker reports in events, records and output metadata.
pub const KIND: &str = "rust";
/// Software version written into outputs and worker records.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
