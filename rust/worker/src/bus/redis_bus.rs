// Twin: bus/redis_transport.py (docs/parity.md)
//! The bus over a real Redis: one connection, opened on first use and again
//! after a failure. Connection faults become `BusUnavailable` at this
//! boundary; callers wait them out with backoff.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use embedfleet_core::constants::{DEFAULT_EVENTS_MAXLEN, GROUP, JOB_FIELD, MAX_MESSAGE_BYTES};
use embedfleet_core::{scripts, wire, Job, Keys};
use redis::{Connection, ErrorKind, RedisError, Script, Value};

use super::reply::{self, Body, Entry};
use super::{Controls, Delivery, Outcome, WorkerRecord};
use crate::error::{Result, WorkerError};
use crate::settings::RedisSettings;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const IO_TIMEOUT: Duration = Duration::from_secs(10);
const PROMOTE_EVERY: Duration = Duration::from_secs(1);
const PROMOTE_BATCH: i64 = 100;

/// A new unique event id, `<12 hex digits per process>-<sequence>`, the
/// shape the Python workers use (`bus.messages.event_id`).
pub fn event_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static TOKEN: OnceLock<u64> = OnceLock::new();
    static SEQ: AtomicU64 = AtomicU64::new(1);
    let token = TOKEN.get_or_init(|| {
        // RandomState is keyed from the OS's randomness once per process.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        h.finish() & 0xffff_ffff_ffff
    });
    format!("{token:012x}-{}", SEQ.fetch_add(1, Ordering::Relaxed))
}

struct Scripts {
    enqueue: Script,
    renew: Script,
    complete: Script,
    retry: Script,
    dead: Script,
    promote: Script,
    trim: Script,
    heartbeat: Script,
    backlog: Script,
}

impl Scripts {
    fn load() -> Self {
        Scripts {
            enqueue: Script::new(scripts::ENQUEUE),
            renew: Script::new(scripts::RENEW),
            complete: Script::new(scripts::COMPLETE),
            retry: Script::new(scripts::RETRY),
            dead: Script::new(scripts::DEAD),
            promote: Script::new(scripts::PROMOTE),
            trim: Script::new(scripts::TRIM),
            heartbeat: Script::new(scripts::HEARTBEAT),
            backlog: Script::new(scripts::BACKLOG),
        }
    }
}

/// Why Redis refused this client, if it did: a wrong password
/// (WRONGPASS), none given (NOAUTH), an ACL user lacking a command or key
/// (NOPERM). Retrying cannot help.
fn refusal(e: &RedisError) -> Option<String> {
    const WRONG: &str = "authentication failed (wrong user name or password, or the user is \
        disabled): check the password of --redis-url or EMBEDFLEET_REDIS_PASSWORD";
    match e.code() {
        _ if e.kind() == ErrorKind::AuthenticationFailed => Some(WRONG.into()),
        Some("WRONGPASS") => Some(WRONG.into()),
        Some("NOAUTH") => Some(
            "authentication required (no password given): \
             give one in --redis-url or EMBEDFLEET_REDIS_PASSWORD"
                .into(),
        ),
        Some("NOPERM") => Some(format!(
            "permission denied (NOPERM {}): the ACL user lacks a command or key the worker \
             needs (deploy/redis/make-acl.sh)",
            e.detail().unwrap_or_default()
        )),
        _ => None,
    }
}

/// Translate a redis-rs error: connection faults are `BusUnavailable`,
/// refused credentials or permissions `BusAccessDenied` naming the Redis
/// location (password masked).
fn translate(e: RedisError, settings: &RedisSettings) -> WorkerError {
    if let Some(why) = refusal(&e) {
        return WorkerError::BusAccessDenied(format!(
            "Redis at {} refused access: {why}",
            settings.redacted()
        ));
    }
    let busy = matches!(
        e.code(),
        Some("LOADING" | "MASTERDOWN" | "TRYAGAIN" | "BUSY")
    );
    if e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || busy
    {
        let what = e
            .code()
            .map(str::to_string)
            .unwrap_or_else(|| format!("{:?}", e.kind()));
        return WorkerError::BusUnavailable(format!("Redis unavailable: {what}"));
    }
    WorkerError::Transient(settings.scrub(&format!("Redis error: {e}")))
}

/// `Transport` over a real Redis, for one consumer.
pub struct RedisBus {
    settings: RedisSettings,
    conn: Option<Connection>,
    keys: Keys,
    lease_ms: u64,
    autoclaim_every: Duration,
    last_autoclaim: Option<Instant>,
    last_promote: Option<Instant>,
    /// Entries handed out by a read over several lanes, beyond the first.
    buffer: VecDeque<(Entry, String)>,
    scripts: Scripts,
}

impl RedisBus {
    pub fn new(settings: RedisSettings, lease_ms: u64) -> Self {
        let keys = Keys::new(&settings.namespace);
        RedisBus {
            settings,
            conn: None,
            keys,
            lease_ms,
            autoclaim_every: Duration::from_secs(1),
            last_autoclaim: None,
            last_promote: None,
            buffer: VecDeque::new(),
            scripts: Scripts::load(),
        }
    }

    /// How often `claim` looks for expired leases (0: on every call).
    pub fn with_autoclaim_every(mut self, every: Duration) -> Self {
        self.autoclaim_every = every;
        self
    }

    /// Another bus to the same Redis with its own connection (for a thread).
    pub fn sibling(&self) -> RedisBus {
        RedisBus::new(self.settings.clone(), self.lease_ms)
            .with_autoclaim_every(self.autoclaim_every)
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn settings(&self) -> &RedisSettings {
        &self.settings
    }

    /// Run `f` on the connection, opening it first if needed; a connection
    /// fault drops it so the next call reconnects.
    fn with<T>(
        &mut self,
        f: impl FnOnce(&mut Connection, &Scripts) -> redis::RedisResult<T>,
    ) -> Result<T> {
        if self.conn.is_none() {
            let info = self.settings.connection_info()?;
            let s = &self.settings;
            let client = redis::Client::open(info).map_err(|e| translate(e, s))?;
            let conn = client
                .get_connection_with_timeout(CONNECT_TIMEOUT)
                .map_err(|e| translate(e, s))?;
            conn.set_read_timeout(Some(IO_TIMEOUT))
                .map_err(|e| translate(e, s))?;
            conn.set_write_timeout(Some(IO_TIMEOUT))
                .map_err(|e| translate(e, s))?;
            self.conn = Some(conn);
        }
        let conn = self.conn.as_mut().expect("connection opened above");
        f(conn, &self.scripts).map_err(|e| {
            let err = translate(e, &self.settings);
            if matches!(err, WorkerError::BusUnavailable(_)) {
                self.conn = None;
            }
            err
        })
    }

    // -- producing (tests, tools) --------------------------------------------

    /// Idempotent enqueue; `true` when the job was new.
    pub fn enqueue(&mut self, job: &Job) -> Result<bool> {
        let k = self.keys.clone();
        let n: i64 = self.with(|c, s| {
            s.enqueue
                .key(k.state())
                .key(k.queue(&job.lane))
                .key(k.stats())
                .key(k.lanes())
                .arg(&job.id)
                .arg(job.to_json())
                .arg(&job.lane)
                .arg("")
                .invoke(c)
        })?;
        Ok(n == 1)
    }

    /// Create the lanes' streams and consumer groups if missing.
    pub fn ensure_lanes(&mut self, lanes: &[String]) -> Result<()> {
        for lane in lanes {
            let q = self.keys.queue(lane);
            let r: redis::RedisResult<Value> = self.with(|c, _| {
                Ok(redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(&q)
                    .arg(GROUP)
                    .arg("0")
                    .arg("MKSTREAM")
                    .query(c))
            })?;
            if let Err(e) = r {
                if e.code() != Some("BUSYGROUP") {
                    let err = translate(e, &self.settings);
                    if matches!(err, WorkerError::BusUnavailable(_)) {
                        self.conn = None;
                    }
                    return Err(err);
                }
            }
        }
        Ok(())
    }

    // -- consuming -------------------------------------------------------------

    /// Take a job: first one whose lease expired, else a new one, lanes in
    /// priority order. Blocks at most `block_ms`. A message no worker can
    /// read is dead-lettered with its reason and reported as `Protocol`
    /// (the next call goes on with the next entry).
    pub fn claim(
        &mut self,
        consumer: &str,
        lanes: &[String],
        block_ms: u64,
    ) -> Result<Option<Delivery>> {
        let due =
            |last: Option<Instant>, every: Duration| last.is_none_or(|t| t.elapsed() >= every);
        if due(self.last_promote, PROMOTE_EVERY) {
            self.last_promote = Some(Instant::now());
            for lane in lanes {
                self.promote(lane)?;
            }
        }
        if due(self.last_autoclaim, self.autoclaim_every) {
            self.last_autoclaim = Some(Instant::now());
            if let Some(d) = self.autoclaim(consumer, lanes)? {
                return Ok(Some(d));
            }
        }
        while let Some((entry, lane)) = self.buffer.pop_front() {
            if self.renew_entry(consumer, &lane, &entry.0)? {
                return self.delivery(consumer, &lane, entry, 1).map(Some);
            }
        }
        // One lane at a time, in priority order: with several streams and
        // COUNT 1, XREADGROUP hands out one entry per stream.
        for lane in lanes {
            if let Some((entry, _)) = self
                .read(consumer, std::slice::from_ref(lane), 0)?
                .into_iter()
                .next()
            {
                return self.delivery(consumer, lane, entry, 1).map(Some);
            }
        }
        if block_ms == 0 {
            return Ok(None);
        }
        let mut got = self.read(consumer, lanes, block_ms)?.into_iter();
        let first = got.next();
        // Read now, decoded when their turn comes: an unreadable one must
        // not hold up (or lose) the others.
        self.buffer.extend(got);
        match first {
            Some((entry, lane)) => self.delivery(consumer, &lane, entry, 1).map(Some),
            None => {
                self.last_autoclaim = None; // the queue was empty: look for expired leases at once
                Ok(None)
            }
        }
    }

    fn promote(&mut self, lane: &str) -> Result<i64> {
        let (d, q) = (self.keys.delayed(lane), self.keys.queue(lane));
        self.with(|c, s| s.promote.key(&d).key(&q).arg(PROMOTE_BATCH).invoke(c))
    }

    /// New entries (`>`) of some lanes, with the lane each came from.
    fn read(
        &mut self,
        consumer: &str,
        lanes: &[String],
        block_ms: u64,
    ) -> Result<Vec<(Entry, String)>> {
        let streams: Vec<String> = lanes.iter().map(|l| self.keys.queue(l)).collect();
        let v: Value = self.with(|c, _| {
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP")
                .arg(GROUP)
                .arg(consumer)
                .arg("COUNT")
                .arg(1);
            if block_ms > 0 {
                cmd.arg("BLOCK").arg(block_ms);
            }
            cmd.arg("STREAMS").arg(&streams);
            for _ in &streams {
                cmd.arg(">");
            }
            cmd.query(c)
        })?;
        let mut out = Vec::new();
        for (stream, entries) in reply::read_reply(&v, JOB_FIELD) {
            let lane = match streams.iter().position(|s| *s == stream) {
                Some(i) => lanes[i].clone(),
                None => continue,
            };
            out.extend(entries.into_iter().map(|e| (e, lane.clone())));
        }
        Ok(out)
    }

    fn autoclaim(&mut self, consumer: &str, lanes: &[String]) -> Result<Option<Delivery>> {
        for lane in lanes {
            let q = self.keys.queue(lane);
            let lease = self.lease_ms;
            let v: Value = self.with(|c, _| {
                redis::cmd("XAUTOCLAIM")
                    .arg(&q)
                    .arg(GROUP)
                    .arg(consumer)
                    .arg(lease)
                    .arg("0-0")
                    .arg("COUNT")
                    .arg(1)
                    .query(c)
            })?;
            let claimed = reply::items(&v)
                .get(1)
                .map(|c| reply::entries(c, JOB_FIELD))
                .unwrap_or_default();
            if let Some((id, body)) = claimed.into_iter().next() {
                if body == Body::Deleted {
                    continue;
                }
                let n = self.times_delivered(&q, &id)?;
                return self.delivery(consumer, lane, (id, body), n).map(Some);
            }
        }
        Ok(None)
    }

    fn times_delivered(&mut self, queue: &str, id: &str) -> Result<u64> {
        let v: Value = self.with(|c, _| {
            redis::cmd("XPENDING")
                .arg(queue)
                .arg(GROUP)
                .arg(id)
                .arg(id)
                .arg(1)
                .query(c)
        })?;
        let n = reply::items(&v)
            .first()
            .and_then(|e| reply::items(e).get(3))
            .and_then(reply::int);
        Ok(n.unwrap_or(1).max(1) as u64)
    }

    fn delivery(&mut self, consumer: &str, lane: &str, entry: Entry, n: u64) -> Result<Delivery> {
        let (entry_id, body) = entry;
        let (parsed, raw) = match body {
            Body::Value(raw) => (Job::from_bytes(&raw), raw),
            Body::Missing | Body::Deleted => (
                Err(wire::invalid(
                    wire::NO_JOB_FIELD,
                    format!("the entry has no {JOB_FIELD:?} field"),
                )),
                Vec::new(),
            ),
        };
        match parsed {
            Ok(job) => Ok(Delivery {
                job,
                lane: lane.to_string(),
                entry_id,
                deliveries: n,
            }),
            Err(e) => {
                // A message no worker can read: dead-letter it under its entry
                // id, keeping at most MAX_MESSAGE_BYTES of it, as text.
                let stub = Job {
                    v: 1,
                    id: format!("entry:{entry_id}"),
                    path: "-".into(),
                    out: "-".into(),
                    rows: None,
                    fp: "-".into(),
                    model: "-".into(),
                    col: "text".into(),
                    idcol: None,
                    lane: lane.to_string(),
                    attempt: 1,
                };
                let d = Delivery {
                    job: stub,
                    lane: lane.to_string(),
                    entry_id,
                    deliveries: n,
                };
                let kept = String::from_utf8_lossy(&raw[..raw.len().min(MAX_MESSAGE_BYTES)]);
                self.dead_raw(consumer, &d, &kept, &e.to_string(), consumer)?;
                Err(WorkerError::from(e))
            }
        }
    }

    /// Extend the lease; `false` when another consumer owns the entry now.
    pub fn renew(&mut self, consumer: &str, d: &Delivery) -> Result<bool> {
        self.renew_entry(consumer, &d.lane, &d.entry_id)
    }

    fn renew_entry(&mut self, consumer: &str, lane: &str, entry_id: &str) -> Result<bool> {
        let q = self.keys.queue(lane);
        let n: i64 = self.with(|c, s| {
            s.renew
                .key(&q)
                .arg(GROUP)
                .arg(entry_id)
                .arg(consumer)
                .invoke(c)
        })?;
        Ok(n == 1)
    }

    /// Acknowledge and count a finished job, if still owned.
    pub fn complete(
        &mut self,
        consumer: &str,
        d: &Delivery,
        rows: u64,
        skipped: bool,
    ) -> Result<Outcome> {
        self.complete_counting(consumer, d, rows, skipped, None)
    }

    /// `complete`, also adding `(model_calls, rows_reused)` of the job to the
    /// fleet's counters (`complete.lua`'s ARGV[7] and ARGV[8]).
    pub fn complete_counting(
        &mut self,
        consumer: &str,
        d: &Delivery,
        rows: u64,
        skipped: bool,
        reuse: Option<(u64, u64)>,
    ) -> Result<Outcome> {
        let k = self.keys.clone();
        let n: i64 = self.with(|c, s| {
            let mut call = s.complete.key(k.queue(&d.lane));
            call.key(k.state())
                .key(k.stats())
                .key(k.errors())
                .arg(GROUP)
                .arg(&d.entry_id)
                .arg(consumer)
                .arg(&d.job.id)
                .arg(rows)
                .arg(if skipped { "skip" } else { "" });
            if let Some((model_calls, rows_reused)) = reuse {
                call.arg(model_calls).arg(rows_reused);
            }
            call.invoke(c)
        })?;
        Ok(Outcome::from_code(n))
    }

    /// Give the job back for a later attempt after `delay_ms` (Redis's clock).
    pub fn retry(
        &mut self,
        consumer: &str,
        d: &Delivery,
        reason: &str,
        delay_ms: u64,
    ) -> Result<Outcome> {
        let k = self.keys.clone();
        // Crash re-deliveries count as attempts too: carry them into the next one.
        let next = d
            .job
            .next_attempt(u32::try_from(d.attempts() + 1).unwrap_or(u32::MAX));
        let n: i64 = self.with(|c, s| {
            s.retry
                .key(k.queue(&d.lane))
                .key(k.delayed(&d.lane))
                .key(k.stats())
                .key(k.errors())
                .arg(GROUP)
                .arg(&d.entry_id)
                .arg(consumer)
                .arg(&d.job.id)
                .arg(next.to_json())
                .arg(reason)
                .arg(delay_ms)
                .invoke(c)
        })?;
        Ok(if n == 1 {
            Outcome::Done
        } else {
            Outcome::LeaseLost
        })
    }

    /// Move the job to the dead-letter stream with its reason.
    pub fn dead_letter(
        &mut self,
        consumer: &str,
        d: &Delivery,
        reason: &str,
        worker_id: &str,
    ) -> Result<Outcome> {
        let raw = d.job.to_json();
        self.dead_raw(consumer, d, &raw, reason, worker_id)
    }

    fn dead_raw(
        &mut self,
        consumer: &str,
        d: &Delivery,
        raw: &str,
        reason: &str,
        worker: &str,
    ) -> Result<Outcome> {
        let k = self.keys.clone();
        let n: i64 = self.with(|c, s| {
            s.dead
                .key(k.queue(&d.lane))
                .key(k.state())
                .key(k.stats())
                .key(k.errors())
                .key(k.dead())
                .arg(GROUP)
                .arg(&d.entry_id)
                .arg(consumer)
                .arg(&d.job.id)
                .arg(raw)
                .arg(reason)
                .arg(d.attempts())
                .arg(worker)
                .invoke(c)
        })?;
        Ok(Outcome::from_code(n))
    }

    // -- fleet -----------------------------------------------------------------

    /// Refresh the registry record; returns the bus's clock in ms.
    pub fn heartbeat(&mut self, record: &WorkerRecord) -> Result<i64> {
        let k = self.keys.clone();
        let body = serde_json::to_string(record).expect("a worker record always serialises");
        self.with(|c, s| {
            s.heartbeat
                .key(k.workers())
                .key(k.workers_seen())
                .arg(&record.worker_id)
                .arg(&body)
                .invoke(c)
        })
    }

    /// Remove a worker from the registry (clean exit).
    pub fn deregister(&mut self, worker_id: &str) -> Result<()> {
        let k = self.keys.clone();
        self.with(|c, _| {
            redis::pipe()
                .hdel(k.workers(), worker_id)
                .hdel(k.workers_seen(), worker_id)
                .query::<()>(c)
        })
    }

    /// Pause and drain.
    pub fn controls(&mut self) -> Result<Controls> {
        let key = self.keys.control();
        let v: Value = self.with(|c, _| redis::cmd("HGETALL").arg(&key).query(c))?;
        let on = |name: &str| {
            reply::pairs(&v)
                .iter()
                .any(|(k, v)| k == name && reply::text(v).as_deref() == Some("1"))
        };
        Ok(Controls {
            paused: on("paused"),
            drain: on("drain"),
        })
    }

    /// Send an event to the manager's journal (capped stream).
    /// The body gets an `eid` (unless it has one): a reader drops a second
    /// copy of an event, should one ever be sent twice.
    pub fn publish_event(&mut self, event: &serde_json::Value) -> Result<()> {
        let key = self.keys.events();
        let mut event = event.clone();
        if let Some(map) = event.as_object_mut() {
            map.entry("eid")
                .or_insert_with(|| serde_json::Value::String(event_id()));
        }
        let body = event.to_string();
        self.with(|c, _| {
            redis::cmd("XADD")
                .arg(&key)
                .arg("MAXLEN")
                .arg("~")
                .arg(DEFAULT_EVENTS_MAXLEN)
                .arg("*")
                .arg("event")
                .arg(&body)
                .query::<Value>(c)
        })
        .map(|_| ())
    }

    /// The last failure reason recorded for a job, if any.
    pub fn last_error(&mut self, job_id: &str) -> Result<Option<String>> {
        let key = self.keys.errors();
        self.with(|c, _| redis::cmd("HGET").arg(&key).arg(job_id).query(c))
    }

    /// Jobs left on some lanes: undelivered, pending with anyone, or delayed,
    /// read at one instant by `bus/lua/backlog.lua` (read command by command,
    /// a job moving between those states could be counted nowhere and a
    /// `--burst` worker exit with work left). Twin: `bus/lanes.py: backlog`.
    pub fn backlog(&mut self, lanes: &[String]) -> Result<u64> {
        if lanes.is_empty() {
            return Ok(0);
        }
        let keys: Vec<String> = lanes
            .iter()
            .flat_map(|l| [self.keys.queue(l), self.keys.delayed(l)])
            .collect();
        let n: i64 = self.with(|c, s| {
            let mut inv = s.backlog.prepare_invoke();
            for k in &keys {
                inv.key(k);
            }
            inv.arg(GROUP).invoke(c)
        })?;
        Ok(n.max(0) as u64)
    }

    /// Drop acknowledged entries of a lane (never past the oldest pending).
    pub fn trim(&mut self, lane: &str) -> Result<i64> {
        let q = self.keys.queue(lane);
        self.with(|c, s| s.trim.key(&q).arg(GROUP).invoke(c))
    }

    /// Run counters (tests and tools).
    pub fn stats(&mut self) -> Result<Vec<(String, i64)>> {
        let key = self.keys.stats();
        let v: Value = self.with(|c, _| redis::cmd("HGETALL").arg(&key).query(c))?;
        Ok(reply::pairs(&v)
            .into_iter()
            .map(|(k, v)| (k, reply::int(v).unwrap_or(0)))
            .collect())
    }

    /// Any command, for tests and tools.
    pub fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> Result<T> {
        self.with(|c, _| cmd.query(c))
    }
}
