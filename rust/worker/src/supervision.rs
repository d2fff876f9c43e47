// Twin: workers/supervision.py (docs/parity.md)
//! Signals and the per-job timeout watchdog (twin of `workers/supervision.py`).
//!
//! First SIGINT/SIGTERM: finish the current job, then exit 0. Second: exit at
//! once (status 128 + signal), leaving the lease to expire so another worker
//! takes the job over. A job running past `--job-timeout` is given back (or
//! dead-lettered) and the process exits `EXIT_JOB_TIMEOUT`, so that its
//! supervisor restarts it: a hung runtime call cannot be interrupted from
//! inside the process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::bus::Delivery;

/// Exit status of a worker whose job ran past `--job-timeout`.
pub const EXIT_JOB_TIMEOUT: i32 = 3;
/// Exit status when Redis refuses the worker's credentials or permissions
/// (WRONGPASS, NOAUTH, NOPERM): sysexits' `EX_NOPERM`, the same in the Python
/// worker (`workers/supervision.py`). A supervisor should not restart it.
pub const EXIT_ACCESS_DENIED: i32 = 77;

/// Make SIGINT/SIGTERM set `stop`; a second one exits the process at once.
pub fn install_stop_signals(stop: &Arc<AtomicBool>) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    for sig in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as it was before this signal.
        signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(stop))?;
        signal_hook::flag::register(sig, Arc::clone(stop))?;
    }
    Ok(())
}

/// Sleep up to `d`, waking early when `stop` is set; true when stopped.
pub fn sleep_unless(stop: &AtomicBool, d: Duration) -> bool {
    let end = Instant::now() + d;
    while !stop.load(Ordering::SeqCst) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        thread::sleep(left.min(Duration::from_millis(50)));
    }
    true
}

type OnTimeout = Box<dyn FnOnce(&Delivery, f64) + Send>;

/// Watches the running job; past the timeout calls `on_timeout` and exits.
#[derive(Clone, Default)]
pub struct Watchdog {
    job: Arc<Mutex<Option<(Delivery, Instant)>>>,
}

impl Watchdog {
    pub fn begin(&self, d: &Delivery) {
        *self.job.lock().unwrap_or_else(|e| e.into_inner()) = Some((d.clone(), Instant::now()));
    }

    pub fn end(&self) {
        *self.job.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Start the watching thread (nothing to do without a timeout).
    pub fn start(&self, timeout: Option<Duration>, on_timeout: OnTimeout) {
        let Some(timeout) = timeout else { return };
        let job = Arc::clone(&self.job);
        let poll = (timeout / 4).clamp(Duration::from_millis(50), Duration::from_millis(500));
        thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || loop {
                thread::sleep(poll);
                let current = job.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let Some((d, started)) = current else {
                    continue;
                };
                let elapsed = started.elapsed();
                if elapsed < timeout {
                    continue;
                }
                log::error!(
                    "{} ran {:.0} s, past --job-timeout {:.0} s: abandoning it and exiting",
                    d.job.path,
                    elapsed.as_secs_f64(),
                    timeout.as_secs_f64()
                );
                on_timeout(&d, elapsed.as_secs_f64());
                std::process::exit(EXIT_JOB_TIMEOUT);
            })
            .expect("cannot start the watchdog thread");
    }
}
