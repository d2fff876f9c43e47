// Twin: bus/keys.py (docs/parity.md)
//! Redis key names of one namespace (see `constants.rs`, `docs/protocol.md`).

use crate::constants::{
    DEFAULT_NAMESPACE, KEY_CONTROL, KEY_DEAD, KEY_DELAYED, KEY_ERRORS, KEY_EVENTS, KEY_LANES,
    KEY_LOCK_RECONCILE, KEY_QUEUE, KEY_REUSE_BYTES, KEY_REUSE_CLAIM, KEY_REUSE_ENTRY,
    KEY_REUSE_MAX, KEY_STATE, KEY_STATS, KEY_WORKERS, KEY_WORKERS_SEEN,
};

/// A reuse key template with its class and text key filled in.
fn fill(template: &str, class: &str, key: &[u8]) -> String {
    template
        .replace("{cls}", class)
        .replace("{key}", &hex::encode(key))
}

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
        self.k(&KEY_QUEUE.replace("{lane}", lane))
    }
    /// ZSET of a lane's retries, scored by due time on Redis's clock.
    pub fn delayed(&self, lane: &str) -> String {
        self.k(&KEY_DELAYED.replace("{lane}", lane))
    }
    /// HASH job id -> q|d|x.
    pub fn state(&self) -> String {
        self.k(KEY_STATE)
    }
    /// HASH of run counters.
    pub fn stats(&self) -> String {
        self.k(KEY_STATS)
    }
    /// STREAM of dead-lettered jobs.
    pub fn dead(&self) -> String {
        self.k(KEY_DEAD)
    }
    /// HASH job id -> last failure reason.
    pub fn errors(&self) -> String {
        self.k(KEY_ERRORS)
    }
    /// HASH worker id -> JSON record.
    pub fn workers(&self) -> String {
        self.k(KEY_WORKERS)
    }
    /// HASH worker id -> Redis ms of the last heartbeat.
    pub fn workers_seen(&self) -> String {
        self.k(KEY_WORKERS_SEEN)
    }
    /// HASH of fleet controls (paused, drain).
    pub fn control(&self) -> String {
        self.k(KEY_CONTROL)
    }
    /// STREAM of worker events (capped).
    pub fn events(&self) -> String {
        self.k(KEY_EVENTS)
    }
    /// SET of lanes that ever received a job.
    pub fn lanes(&self) -> String {
        self.k(KEY_LANES)
    }
    /// STRING: the manager's reconcile lock.
    pub fn lock_reconcile(&self) -> String {
        self.k(KEY_LOCK_RECONCILE)
    }
    /// STRING: the vector of one distinct text (16-byte key) in one class.
    pub fn reuse_entry(&self, class: &str, key: &[u8]) -> String {
        self.k(&fill(KEY_REUSE_ENTRY, class, key))
    }
    /// STRING: the worker computing that text in that class now.
    pub fn reuse_claim(&self, class: &str, key: &[u8]) -> String {
        self.k(&fill(KEY_REUSE_CLAIM, class, key))
    }
    /// STRING integer: bytes accounted to the reuse store's entries.
    pub fn reuse_bytes(&self) -> String {
        self.k(KEY_REUSE_BYTES)
    }
    /// STRING integer: the reuse store's byte ceiling.
    pub fn reuse_max(&self) -> String {
        self.k(KEY_REUSE_MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuse_keys_are_under_the_namespace() {
        let k = Keys::new("ns");
        let key = [0xab; 16];
        assert_eq!(
            k.reuse_entry("e", &key),
            format!("ns:r:e:{}", "ab".repeat(16))
        );
        assert_eq!(
            k.reuse_claim("q", &key),
            format!("ns:r:p:q:{}", "ab".repeat(16))
        );
        assert_eq!(
            (k.reuse_bytes(), k.reuse_max()),
            ("ns:r:bytes".into(), "ns:r:max".into())
        );
    }
}
