// Twin: workers/runtime.py (docs/parity.md)
//! The worker loop (twin of `workers/runtime.py`): claim, run, complete; with
//! leases, bounded retries with backoff, dead letters, pause/drain controls,
//! heartbeats, signals, the job-timeout watchdog, and reconnects with backoff
//! while Redis is away (never a busy loop).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use embedfleet_core::constants::{
    DEFAULT_HEARTBEAT_MS, DEFAULT_RETRY_BASE_MS, DEFAULT_RETRY_MAX_MS, EVENT_JOB_DEAD,
    EVENT_JOB_DONE, EVENT_JOB_RETRY, EVENT_JOB_SKIPPED, EVENT_LEASE_LOST, EVENT_VERSION,
    EVENT_WORKER_STARTED, EVENT_WORKER_STOPPED,
};
use serde_json::{json, Value};

use crate::bus::{Controls, Delivery, Outcome, RedisBus};
use crate::error::{Result, WorkerError};
use crate::faults;
use crate::keeper::{lock, now_ms, Identity, Keeper, SharedStatus, Status};
use crate::pipeline::{JobResult, Pipeline};
use crate::supervision::{sleep_unless, Watchdog, EXIT_ACCESS_DENIED};

const RECONNECT_FIRST: Duration = Duration::from_millis(250);
const RECONNECT_MAX: Duration = Duration::from_secs(10);

/// How one worker behaves on the bus (the CLI fills it from flags).
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub worker_id: String,
    pub host: String,
    pub lanes: Vec<String>,
    pub lease_ms: u64,
    pub max_deliveries: u64,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    pub job_timeout: Option<Duration>,
    pub burst: bool,
    pub block_ms: u64,
    pub heartbeat: Duration,
    pub controls_every: Duration,
    pub device: String,
    pub extra: BTreeMap<String, String>,
}

impl WorkerConfig {
    pub fn new(worker_id: String, host: String, lanes: Vec<String>) -> Self {
        WorkerConfig {
            worker_id,
            host,
            lanes,
            lease_ms: embedfleet_core::constants::DEFAULT_LEASE_MS,
            max_deliveries: u64::from(embedfleet_core::constants::DEFAULT_MAX_DELIVERIES),
            retry_base_ms: DEFAULT_RETRY_BASE_MS,
            retry_max_ms: DEFAULT_RETRY_MAX_MS,
            job_timeout: None,
            burst: false,
            block_ms: 1000,
            heartbeat: Duration::from_millis(DEFAULT_HEARTBEAT_MS),
            controls_every: Duration::from_secs(1),
            device: "cpu".into(),
            extra: BTreeMap::new(),
        }
    }

    /// Backoff before the next attempt: 2 s doubling, capped at 60 s.
    pub fn backoff_ms(&self, attempts: u64) -> u64 {
        let exp = attempts.saturating_sub(1).min(30) as u32;
        self.retry_base_ms
            .saturating_mul(1u64 << exp)
            .min(self.retry_max_ms)
    }
}

/// `"<relative path>: <problem>"` for any failure.
pub fn reason_for(d: &Delivery, e: &WorkerError) -> String {
    let text = e.to_string().lines().next().unwrap_or_default().to_string();
    if text.starts_with(&format!("{}:", d.job.path)) {
        text
    } else {
        format!("{}: {text}", d.job.path)
    }
}

/// One event for the manager's journal.
fn event(worker: &str, kind: &str, d: Option<&Delivery>, fields: Value) -> Value {
    let mut e = json!({"v": EVENT_VERSION, "type": kind, "worker": worker, "kind": crate::KIND, "ts_ms": now_ms()});
    if let Some(d) = d {
        e["job"] = json!(d.job.id);
        e["path"] = json!(d.job.path);
    }
    if let (Some(map), Value::Object(extra)) = (e.as_object_mut(), fields) {
        map.extend(extra);
    }
    e
}

/// One worker process's loop; `run()` returns the exit status.
pub struct Worker {
    bus: RedisBus,
    pipeline: Pipeline,
    cfg: WorkerConfig,
    stop: Arc<AtomicBool>,
    status: SharedStatus,
    watchdog: Watchdog,
    controls: Controls,
    controls_at: Option<Instant>,
    started_ms: u64,
    /// Waits taken between tries of a bus call (Redis away).
    reconnect_waits: u64,
    /// Redis refused this worker (logged once): the loop stops.
    denied: bool,
}

impl Worker {
    pub fn new(
        bus: RedisBus,
        pipeline: Pipeline,
        cfg: WorkerConfig,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Worker {
            bus,
            pipeline,
            cfg,
            stop,
            status: Arc::new(Mutex::new(Status {
                state: "starting",
                ..Status::default()
            })),
            watchdog: Watchdog::default(),
            controls: Controls::default(),
            controls_at: None,
            started_ms: now_ms(),
            reconnect_waits: 0,
            denied: false,
        }
    }

    /// How many times a bus call waited before trying again (each wait
    /// 0.25 s doubling up to 10 s): 0 in a run that never met an outage.
    pub fn reconnect_waits(&self) -> u64 {
        self.reconnect_waits
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn identity(&self) -> Identity {
        Identity {
            worker_id: self.cfg.worker_id.clone(),
            host: self.cfg.host.clone(),
            device: self.cfg.device.clone(),
            lanes: self.cfg.lanes.clone(),
            started_ms: self.started_ms,
            extra: self.cfg.extra.clone(),
        }
    }

    /// Call the bus, waiting out outages with capped exponential backoff.
    /// With `give_up`, any failure is tried again (no busy loop) and `None`
    /// comes back once a stop is requested; without, only outages are waited
    /// out. Permanent errors (an unreadable message, already dead-lettered)
    /// pass through at once; so does a refusal (`BusAccessDenied`, logged
    /// here once), after which the worker stops.
    fn call<T>(
        &mut self,
        what: &str,
        give_up: bool,
        mut f: impl FnMut(&mut RedisBus) -> Result<T>,
    ) -> Result<Option<T>> {
        let mut delay = RECONNECT_FIRST;
        loop {
            match f(&mut self.bus) {
                Ok(v) => return Ok(Some(v)),
                Err(e @ WorkerError::BusAccessDenied(_)) => {
                    if !self.denied {
                        log::error!("{e}");
                        self.denied = true;
                    }
                    return Err(e);
                }
                Err(e) if e.is_permanent() => return Err(e),
                Err(e) if !give_up && !matches!(e, WorkerError::BusUnavailable(_)) => {
                    return Err(e)
                }
                // A stop interrupts a blocking read: that is no outage to report.
                Err(_) if give_up && self.stopping() => return Ok(None),
                Err(e) => {
                    log::warn!("{what}: {e}; trying again in {:.1} s", delay.as_secs_f64());
                    self.reconnect_waits += 1;
                    let never = AtomicBool::new(false);
                    if sleep_unless(if give_up { &self.stop } else { &never }, delay) {
                        return Ok(None);
                    }
                    delay = (delay * 2).min(RECONNECT_MAX);
                }
            }
        }
    }

    /// A bus call that must happen (completion, retry, dead letter): outages
    /// are waited out; any other failure is logged and the lease decides.
    fn must<T>(&mut self, what: &str, f: impl FnMut(&mut RedisBus) -> Result<T>) -> Option<T> {
        match self.call(what, false, f) {
            Ok(v) => v,
            Err(e) => {
                log::error!("{what} failed: {e}");
                None
            }
        }
    }

    fn publish(&mut self, kind: &str, d: Option<&Delivery>, fields: Value) {
        let e = event(&self.cfg.worker_id, kind, d, fields);
        if let Err(err) = self.bus.publish_event(&e) {
            log::warn!("event {kind} not sent: {err}");
        }
    }

    fn set_state(&self, state: &'static str) {
        lock(&self.status).state = state;
    }

    // -- lifecycle -------------------------------------------------------------

    pub fn run(&mut self) -> i32 {
        let lanes = self.cfg.lanes.clone();
        match self.call("creating lanes", true, |b| b.ensure_lanes(&lanes)) {
            Ok(Some(())) => {}
            Err(WorkerError::BusAccessDenied(_)) => return EXIT_ACCESS_DENIED,
            _ => return 0, // stopped before Redis came back
        }
        let keeper = Keeper::start(
            self.bus.sibling(),
            self.identity(),
            Arc::clone(&self.status),
            self.cfg.lease_ms,
            self.cfg.heartbeat,
        );
        self.start_watchdog();
        self.set_state("idle");
        self.beat();
        let fields =
            json!({"device": self.cfg.device, "lanes": self.cfg.lanes, "version": crate::VERSION});
        self.publish(EVENT_WORKER_STARTED, None, fields);
        log::info!(
            "worker {} on lanes {}",
            self.cfg.worker_id,
            self.cfg.lanes.join(",")
        );
        self.sweep_own_temps();
        self.main_loop();
        self.shutdown(keeper);
        if self.denied {
            EXIT_ACCESS_DENIED
        } else {
            0
        }
    }

    /// Remove what an earlier life of this worker id left in the output tree.
    fn sweep_own_temps(&self) {
        let t0 = Instant::now();
        let root = &self.pipeline.roots.output_root;
        let n = crate::output::remove_worker_temps(root, &self.cfg.worker_id);
        if n > 0 {
            log::info!(
                "removed {n} stale temporary files of {} ({:.2} s)",
                self.cfg.worker_id,
                t0.elapsed().as_secs_f64()
            );
        }
    }

    /// Before running a job taken over from another worker (a delivery after
    /// the first): remove the temporaries its earlier attempts left.
    fn clean_taken_over(&self, d: &Delivery) {
        if d.deliveries <= 1 {
            return;
        }
        if let Ok(out) = self.pipeline.roots.output(&d.job.out) {
            let n = crate::output::remove_job_temps(&out, &d.job.id);
            if n > 0 {
                log::info!(
                    "{}: removed {n} temporary files of an earlier attempt",
                    d.job.path
                );
            }
        }
    }

    fn beat(&mut self) {
        let record = self.identity().record(&lock(&self.status));
        if let Err(e) = self.bus.heartbeat(&record) {
            log::warn!("heartbeat failed: {e}");
        }
    }

    fn start_watchdog(&self) {
        let (mut bus, cfg) = (self.bus.sibling(), self.cfg.clone());
        self.watchdog.start(
            self.cfg.job_timeout,
            Box::new(move |d, elapsed| {
                let limit = cfg.job_timeout.map_or(0.0, |t| t.as_secs_f64());
                let reason = format!(
                    "{}: job ran past --job-timeout ({elapsed:.0} s > {limit:.0} s)",
                    d.job.path
                );
                let (id, attempts) = (&cfg.worker_id, d.attempts());
                let sent = if attempts >= cfg.max_deliveries {
                    bus.dead_letter(id, d, &reason, id).map(|_| {
                        (
                            EVENT_JOB_DEAD,
                            json!({"error": reason, "attempts": attempts}),
                        )
                    })
                } else {
                    bus.retry(id, d, &reason, cfg.backoff_ms(attempts))
                        .map(|_| {
                            (
                                EVENT_JOB_RETRY,
                                json!({"error": reason, "attempt": attempts}),
                            )
                        })
                };
                match sent {
                    Ok((kind, fields)) => {
                        let _ = bus.publish_event(&event(id, kind, Some(d), fields));
                    }
                    Err(e) => log::error!(
                        "could not record the timeout of {} (its lease will expire): {e}",
                        d.job.path
                    ),
                }
            }),
        );
    }

    fn main_loop(&mut self) {
        while !self.stopping() && !self.denied {
            let controls = self.read_controls();
            if controls.drain {
                log::info!("drain requested: exiting");
                return;
            }
            if controls.paused {
                self.set_state("paused");
                sleep_unless(&self.stop, self.cfg.controls_every);
                continue;
            }
            self.set_state("idle");
            // A burst run leaves as soon as the lanes are empty (checked
            // before every claim, so also after one that came back empty),
            // instead of first blocking `block_ms` on a claim that cannot
            // succeed.
            if self.cfg.burst && self.nothing_left() {
                log::info!("burst: nothing left to do");
                return;
            }
            if let Some(d) = self.claim() {
                self.run_one(d);
            }
        }
        if self.stopping() {
            log::warn!("stop requested: exiting (send the signal again to exit at once)");
        }
    }

    fn shutdown(&mut self, keeper: Keeper) {
        self.set_state("stopping");
        keeper.stop();
        let (rows, jobs) = {
            let s = lock(&self.status);
            (s.rows_done, s.jobs_done)
        };
        self.publish(
            EVENT_WORKER_STOPPED,
            None,
            json!({"rows": rows, "jobs": jobs}),
        );
        let id = self.cfg.worker_id.clone();
        if let Err(e) = self.bus.deregister(&id) {
            log::warn!("could not deregister: {e}");
        }
    }

    fn read_controls(&mut self) -> Controls {
        if self
            .controls_at
            .is_none_or(|t| t.elapsed() >= self.cfg.controls_every)
        {
            if let Ok(Some(c)) = self.call("reading controls", true, RedisBus::controls) {
                self.controls = c;
                self.controls_at = Some(Instant::now());
            }
        }
        self.controls
    }

    fn nothing_left(&mut self) -> bool {
        let lanes = self.cfg.lanes.clone();
        matches!(
            self.call("reading backlog", true, |b| b.backlog(&lanes)),
            Ok(Some(0))
        )
    }

    fn claim(&mut self) -> Option<Delivery> {
        let (id, lanes, block) = (
            self.cfg.worker_id.clone(),
            self.cfg.lanes.clone(),
            self.cfg.block_ms,
        );
        match self.call("claiming", true, |b| b.claim(&id, &lanes, block)) {
            Ok(d) => d.flatten(),
            Err(WorkerError::BusAccessDenied(_)) => None, // logged; the loop stops
            Err(e) => {
                // Dead-lettered by the bus; the loop goes on at once.
                log::error!("dead letter: {e}");
                None
            }
        }
    }

    // -- running ---------------------------------------------------------------

    fn run_one(&mut self, d: Delivery) {
        if d.attempts() > self.cfg.max_deliveries {
            let job_id = d.job.id.clone();
            let last = self
                .must("reading last error", |b| b.last_error(&job_id))
                .flatten();
            let reason = last.unwrap_or_else(|| {
                format!(
                    "{}: worker died {} times running it",
                    d.job.path,
                    d.attempts() - 1
                )
            });
            self.dead(&d, &reason);
            return;
        }
        {
            let mut s = lock(&self.status);
            s.current = Some(d.clone());
            s.lost = false;
            s.state = "busy";
        }
        self.watchdog.begin(&d);
        self.execute(&d);
        self.watchdog.end();
        let mut s = lock(&self.status);
        s.current = None;
        s.lost = false;
        drop(s);
        self.controls_at = None; // read the controls afresh before the next job
    }

    fn execute(&mut self, d: &Delivery) {
        faults::job_started(&d.job.path);
        self.clean_taken_over(d);
        let status = Arc::clone(&self.status);
        let path = d.job.path.clone();
        let mut checkpoint = move || {
            if lock(&status).lost {
                Err(WorkerError::LeaseLost(format!(
                    "{path}: lease lost to another worker"
                )))
            } else {
                Ok(())
            }
        };
        match self.pipeline.run(&d.job, &mut checkpoint) {
            Ok(result) => {
                self.watchdog.end();
                self.complete(d, &result);
            }
            Err(WorkerError::LeaseLost(_)) => {
                log::warn!("{}: lease lost, abandoning the job", d.job.path);
                self.publish(EVENT_LEASE_LOST, Some(d), json!({}));
            }
            Err(e) if e.is_permanent() => self.dead(d, &reason_for(d, &e)),
            Err(e) => {
                log::warn!("{} failed: {e}", d.job.path);
                self.fail_transient(d, &reason_for(d, &e));
            }
        }
    }

    fn complete(&mut self, d: &Delivery, r: &JobResult) {
        faults::reach("before_ack");
        let id = self.cfg.worker_id.clone();
        let reuse = Some((r.counts.model_calls, r.counts.rows_reused));
        let outcome = self.must("completing", |b| {
            b.complete_counting(&id, d, r.rows, r.skipped, reuse)
        });
        match outcome {
            Some(Outcome::LeaseLost) | None => {
                log::warn!(
                    "{}: finished, but another worker owns it now: not counted",
                    d.job.path
                );
                self.publish(EVENT_LEASE_LOST, Some(d), json!({}));
                return;
            }
            Some(Outcome::Duplicate) => log::info!(
                "{}: already done by another delivery: not counted",
                d.job.path
            ),
            Some(Outcome::Done) => {
                let kind = if r.skipped {
                    EVENT_JOB_SKIPPED
                } else {
                    EVENT_JOB_DONE
                };
                let fields = json!({"rows": r.rows, "seconds": (r.seconds * 1000.0).round() / 1000.0, "counts": r.counts});
                self.publish(kind, Some(d), fields);
                let what = if r.skipped { "up to date," } else { "embedded" };
                log::info!(
                    "{}: {what} {} rows in {:.2} s",
                    d.job.path,
                    r.rows,
                    r.seconds
                );
            }
        }
        let mut s = lock(&self.status);
        s.jobs_done += 1;
        s.rows_done += r.rows;
        if !r.skipped {
            s.busy_s += r.seconds;
        }
    }

    fn fail_transient(&mut self, d: &Delivery, reason: &str) {
        let attempts = d.attempts();
        if attempts >= self.cfg.max_deliveries {
            self.dead(d, reason);
            return;
        }
        let (id, delay) = (self.cfg.worker_id.clone(), self.cfg.backoff_ms(attempts));
        match self.must("scheduling a retry", |b| b.retry(&id, d, reason, delay)) {
            Some(Outcome::Done) => self.publish(
                EVENT_JOB_RETRY,
                Some(d),
                json!({"error": reason, "attempt": attempts, "delay_ms": delay}),
            ),
            Some(Outcome::LeaseLost) => self.refused_after_failure(d, reason),
            _ => {}
        }
    }

    /// A failure reported after another worker took the job over (its
    /// temporary file may have been swept by that worker): said, not counted.
    fn refused_after_failure(&mut self, d: &Delivery, reason: &str) {
        log::warn!(
            "{}: failed ({reason}), but another worker owns it now: not counted",
            d.job.path
        );
        self.publish(EVENT_LEASE_LOST, Some(d), json!({}));
    }

    fn dead(&mut self, d: &Delivery, reason: &str) {
        log::error!("dead letter: {reason}");
        let id = self.cfg.worker_id.clone();
        match self.must("dead-lettering", |b| b.dead_letter(&id, d, reason, &id)) {
            Some(Outcome::Done) => self.publish(
                EVENT_JOB_DEAD,
                Some(d),
                json!({"error": reason, "attempts": d.attempts()}),
            ),
            Some(Outcome::LeaseLost) => self.refused_after_failure(d, reason),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_two_seconds_up_to_a_minute() {
        let cfg = WorkerConfig::new("w".into(), "h".into(), vec!["default".into()]);
        let got: Vec<u64> = (1..=7).map(|a| cfg.backoff_ms(a)).collect();
        assert_eq!(got, vec![2000, 4000, 8000, 16000, 32000, 60000, 60000]);
    }
}
