// Twin: workers/faults.py (docs/parity.md)
//! Fault hooks for the fault-injection harness; inert unless set (the same
//! variables as `workers/faults.py`):
//! - `EMBEDFLEET_FAULT_POINT`: `after_tmp_write`, `after_rename` or
//!   `before_ack` (a comma list may name several): the worker SIGKILLs itself
//!   there, the `EMBEDFLEET_FAULT_EVERY`-th time it reaches it (default 1), or
//!   with probability `EMBEDFLEET_FAULT_PROBABILITY` each time when set.
//! - `EMBEDFLEET_FAULT_CRASH_PATH`: SIGKILL whenever a job whose path contains
//!   this substring starts running (a poison job).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

struct Faults {
    points: Vec<String>,
    every: u64,
    probability: f64,
    crash_path: String,
    reached: Mutex<HashMap<String, u64>>,
}

fn faults() -> &'static Faults {
    static F: OnceLock<Faults> = OnceLock::new();
    F.get_or_init(|| {
        let var = |k: &str| std::env::var(k).unwrap_or_default();
        Faults {
            points: var("EMBEDFLEET_FAULT_POINT")
                .split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
            every: var("EMBEDFLEET_FAULT_EVERY").parse().unwrap_or(1).max(1),
            probability: var("EMBEDFLEET_FAULT_PROBABILITY").parse().unwrap_or(0.0),
            crash_path: var("EMBEDFLEET_FAULT_CRASH_PATH"),
            reached: Mutex::new(HashMap::new()),
        }
    })
}

fn die() {
    // SAFETY: sending a signal to ourselves has no memory-safety preconditions.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
}

/// A pseudo-random number in [0, 1) (no need for quality: fault sampling).
fn uniform() -> f64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut x =
        u64::from(t.subsec_nanos()) ^ (u64::from(std::process::id()) << 32) ^ 0x9e37_79b9_7f4a_7c15;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Called at each named point; kills the process when told to.
pub fn reach(point: &str) {
    let f = faults();
    if !f.points.iter().any(|p| p == point) {
        return;
    }
    let n = {
        let mut r = f.reached.lock().unwrap_or_else(|e| e.into_inner());
        let n = r.entry(point.to_string()).or_insert(0);
        *n += 1;
        *n
    };
    let hit = if f.probability > 0.0 {
        uniform() < f.probability
    } else {
        n % f.every == 0
    };
    if hit {
        die();
    }
}

/// Called when a job starts running; kills the process on a poison path.
pub fn job_started(path: &str) {
    let f = faults();
    if !f.crash_path.is_empty() && path.contains(&f.crash_path) {
        die();
    }
}
