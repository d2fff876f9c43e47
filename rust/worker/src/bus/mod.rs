//! The Rust side of the job bus (`docs/protocol.md`; Python twin:
//! `bus/transport.py` and `bus/redis_transport.py`). Every state change goes
//! through one of the shared Lua scripts of `embedfleet_core::scripts`.

mod redis_bus;
mod reply;

use std::collections::BTreeMap;

use embedfleet_core::Job;
use serde::Serialize;

pub use redis_bus::RedisBus;

/// A job handed to one consumer: where it came from and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub job: Job,
    pub lane: String,
    pub entry_id: String,
    pub deliveries: u64,
}

impl Delivery {
    /// Attempts so far, this one included: retries plus re-deliveries.
    pub fn attempts(&self) -> u64 {
        u64::from(self.job.attempt).saturating_sub(1) + self.deliveries
    }
}

/// What a state-changing script did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Another consumer owns the entry now: nothing changed.
    LeaseLost = 0,
    /// Applied and counted.
    Done = 1,
    /// Acknowledged, but the job was already done (or dead): not counted again.
    Duplicate = 2,
}

impl Outcome {
    pub fn from_code(code: i64) -> Outcome {
        match code {
            1 => Outcome::Done,
            2 => Outcome::Duplicate,
            _ => Outcome::LeaseLost,
        }
    }
}

/// Fleet controls read from the control hash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Controls {
    pub paused: bool,
    pub drain: bool,
}

/// What a worker tells the registry on every heartbeat (same JSON as Python's).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WorkerRecord {
    pub worker_id: String,
    pub host: String,
    pub pid: u32,
    pub kind: String,
    pub device: String,
    pub version: String,
    pub lanes: Vec<String>,
    pub state: String,
    pub current_job: Option<String>,
    pub rows_done: u64,
    pub jobs_done: u64,
    pub rows_per_s: f64,
    pub started_ms: u64,
    #[serde(flatten)]
    pub extra: BTreeMap<String, String>,
}
