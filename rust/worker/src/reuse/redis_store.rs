// Twin: bus/reuse_redis.py (docs/parity.md)
//! `ReuseStore` over Redis (twin of `bus/reuse_redis.py`): the bus's own
//! server (keys under the namespace, within the store's byte ceiling) or a
//! dedicated one (`--reuse-url`). Look-ups are one `MGET`; claims and writes
//! are the shared `reuse_claim.lua` and `reuse_put.lua`, atomic per call.
//!
//! The store has a connection of its own, opened on first use and dropped
//! after any fault so the next job connects afresh. Errors never carry the
//! URL or the password.

use std::time::Duration;

use embedfleet_core::constants::{
    DEFAULT_REUSE_CLAIM_MS, DEFAULT_REUSE_MAX_BYTES, REUSE_ENTRY_OVERHEAD,
};
use embedfleet_core::{scripts, Keys};
use redis::{Connection, RedisError, Script, Value};

use super::entry::Class;
use super::store::{Claimed, ReuseStore};
use crate::error::{Result, WorkerError};
use crate::settings::RedisSettings;
use crate::textkey::TextKey;

/// The store only saves work: give up on a slow server sooner than the bus does.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Connection faults are `BusUnavailable`, the rest `Transient`; either way
/// the worker goes on without the store.
fn translate(e: &RedisError) -> WorkerError {
    let what = e
        .code()
        .map(str::to_string)
        .unwrap_or_else(|| format!("{:?}", e.kind()));
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
        WorkerError::BusUnavailable(format!("reuse store unavailable: {what}"))
    } else {
        WorkerError::Transient(format!("reuse store error: {what}"))
    }
}

/// `ReuseStore` backed by one Redis database.
pub struct RedisReuseStore {
    settings: RedisSettings,
    keys: Keys,
    conn: Option<Connection>,
    claim_ms: u64,
    default_max_bytes: u64,
    claim: Script,
    put: Script,
}

impl RedisReuseStore {
    /// A store in the Redis of `settings`, keys under its namespace.
    pub fn new(settings: RedisSettings) -> Self {
        RedisReuseStore {
            keys: Keys::new(&settings.namespace),
            settings,
            conn: None,
            claim_ms: DEFAULT_REUSE_CLAIM_MS,
            default_max_bytes: DEFAULT_REUSE_MAX_BYTES,
            claim: Script::new(scripts::REUSE_CLAIM),
            put: Script::new(scripts::REUSE_PUT),
        }
    }

    /// How long a claim lives (tests shorten it to see claims lapse).
    pub fn with_claim_ms(mut self, claim_ms: u64) -> Self {
        self.claim_ms = claim_ms;
        self
    }

    /// The ceiling when the manager set none in `r:max`.
    pub fn with_default_max_bytes(mut self, bytes: u64) -> Self {
        self.default_max_bytes = bytes;
        self
    }

    pub fn settings(&self) -> &RedisSettings {
        &self.settings
    }

    fn with<T>(
        &mut self,
        f: impl FnOnce(&mut Connection, &Self) -> redis::RedisResult<T>,
    ) -> Result<T> {
        if self.conn.is_none() {
            let info = self.settings.connection_info()?;
            let open = || -> redis::RedisResult<Connection> {
                let conn =
                    redis::Client::open(info)?.get_connection_with_timeout(CONNECT_TIMEOUT)?;
                conn.set_read_timeout(Some(IO_TIMEOUT))?;
                conn.set_write_timeout(Some(IO_TIMEOUT))?;
                Ok(conn)
            };
            self.conn = Some(open().map_err(|e| translate(&e))?);
        }
        let mut conn = self.conn.take().expect("connection opened above");
        match f(&mut conn, self) {
            Ok(v) => {
                self.conn = Some(conn);
                Ok(v)
            }
            Err(e) => Err(translate(&e)), // the connection is dropped: the next call reconnects
        }
    }

    /// Bytes accounted to the store's entries.
    pub fn used_bytes(&mut self) -> Result<u64> {
        let key = self.keys.reuse_bytes();
        let v: Option<u64> = self.with(|c, _| redis::cmd("GET").arg(&key).query(c))?;
        Ok(v.unwrap_or(0))
    }

    fn entry_keys(&self, key: &TextKey, classes: &[Class]) -> Vec<String> {
        classes
            .iter()
            .map(|c| self.keys.reuse_entry(c.name(), key))
            .collect()
    }
}

fn bulk(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        _ => None,
    }
}

fn protocol(what: &str) -> WorkerError {
    WorkerError::Transient(format!("reuse store error: unexpected reply to {what}"))
}

impl ReuseStore for RedisReuseStore {
    fn lookup(&mut self, keys: &[TextKey], classes: &[Class]) -> Result<Vec<Option<Vec<u8>>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = keys
            .iter()
            .flat_map(|k| self.entry_keys(k, classes))
            .collect();
        let values: Vec<Value> = self.with(|c, _| redis::cmd("MGET").arg(&names).query(c))?;
        if values.len() != names.len() {
            return Err(protocol("MGET"));
        }
        Ok(values
            .chunks(classes.len())
            .map(|per_class| per_class.iter().find_map(bulk))
            .collect())
    }

    fn claim(&mut self, keys: &[TextKey], classes: &[Class], owner: &str) -> Result<Vec<Claimed>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut names = Vec::with_capacity(keys.len() * classes.len() * 2);
        for key in keys {
            names.extend(self.entry_keys(key, classes));
            names.extend(classes.iter().map(|c| self.keys.reuse_claim(c.name(), key)));
        }
        let answers: Vec<Value> = self.with(|c, s| {
            s.claim
                .key(&names)
                .arg(owner)
                .arg(s.claim_ms)
                .arg(classes.len())
                .invoke(c)
        })?;
        if answers.len() != keys.len() {
            return Err(protocol("reuse_claim"));
        }
        answers
            .iter()
            .map(|a| match a {
                Value::BulkString(b) => Ok(Claimed::Value(b.clone())),
                Value::Int(1) => Ok(Claimed::Mine),
                Value::Int(0) => Ok(Claimed::Theirs),
                _ => Err(protocol("reuse_claim")),
            })
            .collect()
    }

    fn put(
        &mut self,
        class: Class,
        keys: &[TextKey],
        values: &[Vec<u8>],
        owner: &str,
    ) -> Result<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        let mut names = vec![self.keys.reuse_bytes(), self.keys.reuse_max()];
        for key in keys {
            names.push(self.keys.reuse_entry(class.name(), key));
            names.push(self.keys.reuse_claim(class.name(), key));
        }
        self.with(|c, s| {
            let mut call = s.put.key(&names);
            call.arg(owner)
                .arg(s.default_max_bytes)
                .arg(REUSE_ENTRY_OVERHEAD);
            for v in values {
                call.arg(v.as_slice());
            }
            call.invoke(c)
        })
    }
}
