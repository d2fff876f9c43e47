//! Redis key names of one namespace (see `constants.rs`, `docs/protocol.md`).

use crate::constants::DEFAULT_NAMESPACE;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub namespace: String,
}

impl Default for Keys {
    fn default() -> Self {
        Keys::new(DEFAULT_NAMESPACE)
    }
}

impl Keys {
    pub fn new(namespace: &str) -> Self {
        Keys {
            namespace: namespace.to_string(),
        }
    }
    fn k(&self, suffix: &str) -> String {
        format!("{}:{}", self.namespace, suffix)
    }
    /// STREAM of job messages of one lane.
    pub fn queue(&self, lane: &str) -> String {
        self.k(&format!("q:{lane}"))
    }
    /// ZSET of a lane's retries, scored by due time on Redis's clock.
    pub fn delayed(&self, lane: &str) -> String {
        self.k(&format!("delayed:{lane}"))
    }
    /// HASH job id -> q|d|x.
    pub fn state(&self) -> String {
        self.k("state")
    }
    /// HASH of run counters.
    pub fn stats(&self) -> String {
        self.k("stats")
    }
    /// STREAM of dead-lettered jobs.
    pub fn dead(&self) -> String {
        self.k("dead")
    }
    /// HASH job id -> last failure reason.
    pub fn errors(&self) -> String {
        self.k("errors")
    }
    /// HASH worker id -> JSON record.
    pub fn workers(&self) -> String {
        self.k("workers")
    }
    /// HASH worker id -> Redis ms of the last heartbeat.
    pub fn workers_seen(&self) -> String {
        self.k("workers:seen")
    }
    /// HASH of fleet controls (paused, drain).
    pub fn control(&self) -> String {
        self.k("control")
    }
    /// STREAM of worker events (capped).
    pub fn events(&self) -> String {
        self.k("events")
    }
    /// SET of lanes that ever received a job.
    pub fn lanes(&self) -> String {
        self.k("lanes")
    }
}
