// Twin: workers/lease.py, workers/heartbeat.py (docs/parity.md)
//! A background thread with its own Redis connection that keeps the running
//! job's lease alive (every `lease / 3`) and refreshes the worker's registry
//! record (every 5 s). When `renew` says another consumer owns the entry, the
//! job is marked lost and the worker abandons it at its next checkpoint. While
//! Redis is away both are tried again on the next round; the ownership check
//! at completion decides in the end.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::bus::{Delivery, RedisBus, WorkerRecord};

/// What the worker is doing now; shared by the loop and the keeper.
#[derive(Debug, Default)]
pub struct Status {
    pub state: &'static str,
    pub current: Option<Delivery>,
    pub lost: bool,
    pub rows_done: u64,
    pub jobs_done: u64,
    pub busy_s: f64,
}

pub type SharedStatus = Arc<Mutex<Status>>;

pub fn lock(s: &SharedStatus) -> MutexGuard<'_, Status> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The fixed part of a worker's registry record.
#[derive(Debug, Clone)]
pub struct Identity {
    pub worker_id: String,
    pub host: String,
    pub device: String,
    pub lanes: Vec<String>,
    pub started_ms: u64,
    pub extra: BTreeMap<String, String>,
}

impl Identity {
    pub fn record(&self, s: &Status) -> WorkerRecord {
        WorkerRecord {
            worker_id: self.worker_id.clone(),
            host: self.host.clone(),
            pid: std::process::id(),
            kind: crate::KIND.into(),
            device: self.device.clone(),
            version: crate::VERSION.into(),
            lanes: self.lanes.clone(),
            state: s.state.into(),
            current_job: s.current.as_ref().map(|d| d.job.path.clone()),
            rows_done: s.rows_done,
            jobs_done: s.jobs_done,
            rows_per_s: if s.busy_s > 0.0 {
                (s.rows_done as f64 / s.busy_s * 100.0).round() / 100.0
            } else {
                0.0
            },
            started_ms: self.started_ms,
            extra: self.extra.clone(),
        }
    }
}

/// Handle of the running keeper thread.
pub struct Keeper {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

struct Round {
    bus: RedisBus,
    who: Identity,
    status: SharedStatus,
}

impl Round {
    fn renew(&mut self) {
        let held = {
            let s = lock(&self.status);
            s.current.clone().filter(|_| !s.lost)
        };
        let Some(d) = held else { return };
        match self.bus.renew(&self.who.worker_id, &d) {
            Ok(true) => {}
            Ok(false) => {
                log::warn!("lease of {} lost to another worker", d.job.path);
                let mut s = lock(&self.status);
                if s.current.as_ref().is_some_and(|c| c.entry_id == d.entry_id) {
                    s.lost = true;
                }
            }
            Err(e) => log::warn!("cannot renew the lease of {}: {e}", d.job.path),
        }
    }

    fn beat(&mut self) {
        let record = self.who.record(&lock(&self.status));
        if let Err(e) = self.bus.heartbeat(&record) {
            log::warn!("heartbeat failed: {e}");
        }
    }
}

impl Keeper {
    pub fn start(
        bus: RedisBus,
        who: Identity,
        status: SharedStatus,
        lease_ms: u64,
        heartbeat: Duration,
    ) -> Keeper {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let renew_every = Duration::from_millis((lease_ms / 3).max(10));
        let mut round = Round { bus, who, status };
        let handle = thread::Builder::new()
            .name("lease".into())
            .spawn(move || {
                let (mut next_renew, mut next_beat) =
                    (Instant::now() + renew_every, Instant::now() + heartbeat);
                while !flag.load(Ordering::SeqCst) {
                    thread::sleep(
                        Duration::from_millis(10).max(renew_every.min(Duration::from_millis(50))),
                    );
                    if Instant::now() >= next_renew {
                        round.renew();
                        next_renew = Instant::now() + renew_every;
                    }
                    if Instant::now() >= next_beat {
                        round.beat();
                        next_beat = Instant::now() + heartbeat;
                    }
                }
            })
            .expect("cannot start the lease thread");
        Keeper {
            stop,
            handle: Some(handle),
        }
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
