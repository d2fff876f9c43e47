//! What a worker needs from the reuse store (twin of `bus/reuse.py`'s
//! `ReuseStore`), and an in-memory store for tests of the worker's logic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use embedfleet_core::constants::{DEFAULT_REUSE_MAX_BYTES, REUSE_ENTRY_OVERHEAD};

use super::entry::Class;
use crate::error::{Result, WorkerError};
use crate::textkey::TextKey;

/// What `ReuseStore::claim` found for one text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// An entry of an acceptable class (decode it; it may be corrupt).
    Value(Vec<u8>),
    /// The caller holds the claim on its own class now: it computes the text.
    Mine,
    /// Another worker holds a claim on an acceptable class: ask again later.
    Theirs,
}

/// The reuse store. Every method may fail (Redis away, a script error, a
/// full server); callers then carry on without the store.
pub trait ReuseStore: Send {
    /// Per key, the value of the first class in `classes` that has one.
    fn lookup(&mut self, keys: &[TextKey], classes: &[Class]) -> Result<Vec<Option<Vec<u8>>>>;

    /// Per key: a value, or the caller's claim on `classes`' last (its own
    /// class), or `Theirs` while another worker computes it.
    fn claim(&mut self, keys: &[TextKey], classes: &[Class], owner: &str) -> Result<Vec<Claimed>>;

    /// Store values within the ceiling and drop the owner's claims; an empty
    /// value only drops the claim. Returns the entries written.
    fn put(
        &mut self,
        class: Class,
        keys: &[TextKey],
        values: &[Vec<u8>],
        owner: &str,
    ) -> Result<u64>;
}

#[derive(Debug, Default)]
struct Memory {
    entries: HashMap<(Class, TextKey), Vec<u8>>,
    claims: HashMap<(Class, TextKey), String>,
    used: u64,
}

/// In-memory `ReuseStore` for unit tests of worker logic. Clones share one
/// store (two "workers" in one test); claims never expire unless a test calls
/// `expire_claims`; `fail` makes every call fail as if Redis were away.
#[derive(Debug, Clone)]
pub struct MemoryReuseStore {
    pub max_bytes: u64,
    inner: Arc<Mutex<Memory>>,
    failing: Arc<AtomicBool>,
}

impl Default for MemoryReuseStore {
    fn default() -> Self {
        MemoryReuseStore {
            max_bytes: DEFAULT_REUSE_MAX_BYTES,
            inner: Arc::default(),
            failing: Arc::default(),
        }
    }
}

impl MemoryReuseStore {
    fn state(&self) -> Result<std::sync::MutexGuard<'_, Memory>> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(WorkerError::BusUnavailable(
                "reuse store unavailable: test fault".into(),
            ));
        }
        Ok(self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// From now on every call fails (or succeeds again).
    pub fn fail(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }

    pub fn expire_claims(&self) {
        self.inner.lock().expect("store lock").claims.clear();
    }

    pub fn len(&self) -> usize {
        self.inner.lock().expect("store lock").entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Overwrite (or plant) an entry, e.g. a corrupt one.
    pub fn plant(&self, class: Class, key: TextKey, value: Vec<u8>) {
        let mut m = self.inner.lock().expect("store lock");
        m.entries.insert((class, key), value);
    }

    pub fn entry(&self, class: Class, key: &TextKey) -> Option<Vec<u8>> {
        let m = self.inner.lock().expect("store lock");
        m.entries.get(&(class, *key)).cloned()
    }
}

fn first(m: &Memory, key: &TextKey, classes: &[Class]) -> Option<Vec<u8>> {
    classes
        .iter()
        .find_map(|c| m.entries.get(&(*c, *key)).cloned())
}

impl ReuseStore for MemoryReuseStore {
    fn lookup(&mut self, keys: &[TextKey], classes: &[Class]) -> Result<Vec<Option<Vec<u8>>>> {
        let m = self.state()?;
        Ok(keys.iter().map(|k| first(&m, k, classes)).collect())
    }

    fn claim(&mut self, keys: &[TextKey], classes: &[Class], owner: &str) -> Result<Vec<Claimed>> {
        let mut m = self.state()?;
        let (own, others) = classes.split_last().expect("at least one class");
        Ok(keys
            .iter()
            .map(|key| {
                if let Some(v) = first(&m, key, classes) {
                    Claimed::Value(v)
                } else if others.iter().any(|c| m.claims.contains_key(&(*c, *key))) {
                    Claimed::Theirs
                } else {
                    let holder = m.claims.entry((*own, *key)).or_insert(owner.to_string());
                    if holder == owner {
                        Claimed::Mine
                    } else {
                        Claimed::Theirs
                    }
                }
            })
            .collect())
    }

    fn put(
        &mut self,
        class: Class,
        keys: &[TextKey],
        values: &[Vec<u8>],
        owner: &str,
    ) -> Result<u64> {
        let max = self.max_bytes;
        let mut m = self.state()?;
        let mut written = 0;
        for (key, value) in keys.iter().zip(values) {
            let slot = (class, *key);
            if !value.is_empty() {
                let cost = 2 * key.len() as u64 + value.len() as u64 + REUSE_ENTRY_OVERHEAD;
                let exists = m.entries.contains_key(&slot);
                if exists || max == 0 || m.used + cost <= max {
                    m.used += if exists { 0 } else { cost };
                    m.entries.insert(slot, value.clone());
                    written += 1;
                }
            }
            if m.claims.get(&slot).map(String::as_str) == Some(owner) {
                m.claims.remove(&slot);
            }
        }
        Ok(written)
    }
}
