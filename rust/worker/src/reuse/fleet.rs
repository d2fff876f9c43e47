// Twin: workers/reuse.py (docs/parity.md)
//! Fleet-wide reuse for one job (twin of `workers/reuse.py`): a distinct
//! text costs one model call in the whole fleet.
//!
//! `FleetReuse::resolve` takes the distinct texts of a chunk that the job
//! has not seen yet, answers what it can from the store (one `MGET`), sorts
//! the misses by (byte length, key) and claims them round by round: it
//! embeds the texts it claimed (one model call per round) and stores them,
//! then asks again for the texts other workers hold until their entries
//! appear or their claims lapse (`docs/reuse.md`). Any store fault turns the
//! store off for the rest of the job and the texts are computed here: the
//! store can only save work.

use std::collections::VecDeque;
use std::time::Duration;

use embedfleet_core::constants::{EMBEDDING_DIM, REUSE_ROUND_TEXTS};

use super::entry::{decode_entry, encode_entry, Class};
use super::store::{Claimed, ReuseStore};
use crate::batching::{Embedder, Encoded, Pending};
use crate::error::{Result, WorkerError};
use crate::textkey::{TextKey, TextKeyer};

/// First pause before asking again for texts another worker holds.
pub const POLL_FIRST: Duration = Duration::from_millis(10);
/// Longest pause between asks.
pub const POLL_MAX: Duration = Duration::from_millis(200);

/// Vectors of distinct texts, in the order given, and where they came from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolved {
    /// Row-major `n x 384`, unit vectors.
    pub embeddings: Vec<f32>,
    pub truncated: Vec<bool>,
    /// True where the vector came from the store.
    pub reused: Vec<bool>,
    /// Precision class of each vector.
    pub class: Vec<Class>,
    /// Texts sent to the model.
    pub model_calls: u64,
}

impl Resolved {
    fn new(n: usize, class: Class) -> Self {
        Resolved {
            embeddings: vec![0.0; n * EMBEDDING_DIM],
            truncated: vec![false; n],
            reused: vec![false; n],
            class: vec![class; n],
            model_calls: 0,
        }
    }

    fn set(&mut self, i: usize, vector: &[f32], truncated: bool) {
        self.embeddings[i * EMBEDDING_DIM..(i + 1) * EMBEDDING_DIM].copy_from_slice(vector);
        self.truncated[i] = truncated;
    }
}

/// One job's view of the reuse store (`store` `None`: reuse switched off).
pub struct FleetReuse<'a> {
    store: Option<&'a mut dyn ReuseStore>,
    keyer: TextKeyer,
    own: Class,
    owner: String,
    round_texts: usize,
}

/// The distinct texts of one `resolve` and their keys (steps name texts by index).
struct Texts<'t> {
    texts: &'t [&'t str],
    keys: Vec<TextKey>,
}

impl<'a> FleetReuse<'a> {
    /// `owner` is the worker id (the claims' holder); `precision` the
    /// embedder's, which decides the class it writes and those it reads.
    pub fn new(
        store: Option<&'a mut dyn ReuseStore>,
        model_id: &str,
        precision: &str,
        owner: &str,
    ) -> Self {
        FleetReuse {
            store,
            keyer: TextKeyer::new(model_id),
            own: Class::of_precision(precision),
            owner: owner.to_string(),
            round_texts: REUSE_ROUND_TEXTS,
        }
    }

    /// Texts claimed at once (tests use small rounds).
    pub fn with_round_texts(mut self, n: usize) -> Self {
        self.round_texts = n.max(1);
        self
    }

    /// Whether the store is still in use for this job.
    pub fn active(&self) -> bool {
        self.store.is_some()
    }

    /// The class of the vectors this worker computes.
    pub fn own_class(&self) -> Class {
        self.own
    }

    /// Vectors of `texts` (distinct), from the store or the model.
    /// `checkpoint` runs between asks for texts others hold (a lost lease
    /// stops the job there).
    pub fn resolve(
        &mut self,
        texts: &[&str],
        embedder: &mut dyn Embedder,
        checkpoint: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Resolved> {
        let mut out = Resolved::new(texts.len(), self.own);
        if self.store.is_none() {
            let all: Vec<usize> = (0..texts.len()).collect();
            self.compute(texts, &all, embedder, &mut out)?;
            return Ok(out);
        }
        let t = Texts {
            texts,
            keys: texts.iter().map(|s| self.keyer.key(s)).collect(),
        };
        let mut todo = self.lookup(&t, &mut out);
        todo.sort_by(|&a, &b| (t.texts[a].len(), &t.keys[a]).cmp(&(t.texts[b].len(), &t.keys[b])));
        let mut waiting = Vec::new();
        // Rounds sent to the device and not yet stored: at most two, so the
        // device computes round r while round r+1 is claimed and round r-1
        // is stored (an embedder without `submit` computes each when sent).
        let mut flight: VecDeque<Flight> = VecDeque::new();
        let mut failed = None;
        for round in todo.chunks(self.round_texts) {
            let (mine, others) = self.claim(&t, round, &mut out);
            waiting.extend(others);
            flight.push_back(send(&t, mine, embedder));
            if flight.len() == 2 {
                let f = flight.pop_front().expect("two rounds in flight");
                if let Err(e) = self.land(&t, f, &mut out) {
                    failed = Some(e);
                    break;
                }
            }
        }
        while failed.is_none() {
            let Some(f) = flight.pop_front() else { break };
            if let Err(e) = self.land(&t, f, &mut out) {
                failed = Some(e);
            }
        }
        if let Some(e) = failed {
            // Claimed and maybe computing: let the device finish, then release.
            for f in flight {
                let _ = f.pending.map(Pending::wait);
                self.release(&t, &f.idx);
            }
            return Err(e);
        }
        self.wait(&t, waiting, embedder, checkpoint, &mut out)?;
        Ok(out)
    }

    // -- store steps; a fault switches the store off and computes instead --

    /// Entries found by one `MGET`; returns the texts still to do.
    fn lookup(&mut self, t: &Texts, out: &mut Resolved) -> Vec<usize> {
        let classes = self.own.acceptable();
        let store = self.store.as_deref_mut().expect("store in use");
        match store.lookup(&t.keys, classes) {
            Ok(values) if values.len() == t.keys.len() => {
                let mut invalid = 0;
                let todo = (0..t.keys.len())
                    .filter(|&i| !take(values[i].as_deref(), i, t, classes, out, &mut invalid))
                    .collect();
                warn_invalid(invalid);
                todo
            }
            Ok(_) => {
                self.off(&WorkerError::Transient(
                    "reuse store error: short reply".into(),
                ));
                (0..t.keys.len()).collect()
            }
            Err(e) => {
                self.off(&e);
                (0..t.keys.len()).collect()
            }
        }
    }

    /// Claim `idx`: the texts this worker computes and those another holds
    /// (a fault switches the store off: this worker computes them all).
    fn claim(&mut self, t: &Texts, idx: &[usize], out: &mut Resolved) -> (Vec<usize>, Vec<usize>) {
        let classes = self.own.acceptable();
        let Some(store) = self.store.as_deref_mut() else {
            return (idx.to_vec(), Vec::new());
        };
        let keys: Vec<TextKey> = idx.iter().map(|&i| t.keys[i]).collect();
        let answers = match store.claim(&keys, classes, &self.owner) {
            Ok(a) => a,
            Err(e) => {
                self.off(&e);
                return (idx.to_vec(), Vec::new());
            }
        };
        let (mut mine, mut others, mut invalid) = (Vec::new(), Vec::new(), 0);
        for (&i, answer) in idx.iter().zip(answers) {
            match answer {
                Claimed::Value(v) if take(Some(&v), i, t, classes, out, &mut invalid) => {}
                // An invalid entry is recomputed; its new value overwrites it.
                Claimed::Value(_) | Claimed::Mine => mine.push(i),
                Claimed::Theirs => others.push(i),
            }
        }
        warn_invalid(invalid);
        (mine, others)
    }

    /// Take a round's vectors from the device and store them; on failure the
    /// round's claims are released before the error is returned.
    fn land(&mut self, t: &Texts, f: Flight, out: &mut Resolved) -> Result<()> {
        let Some(pending) = f.pending else {
            return Ok(());
        };
        let enc = match pending.wait() {
            Ok(enc) => enc,
            Err(e) => {
                self.release(t, &f.idx);
                return Err(e);
            }
        };
        self.fill(&f.idx, &enc, out);
        self.put(t, &f.idx, out);
        Ok(())
    }

    /// Claim `idx`, compute and store what this worker holds; return the rest.
    fn round(
        &mut self,
        t: &Texts,
        idx: &[usize],
        embedder: &mut dyn Embedder,
        out: &mut Resolved,
    ) -> Result<Vec<usize>> {
        let (mine, others) = self.claim(t, idx, out);
        let f = send(t, mine, embedder);
        self.land(t, f, out)?;
        Ok(others)
    }

    /// Ask again for texts other workers hold until each arrives or its
    /// claim lapses and this worker computes it.
    fn wait(
        &mut self,
        t: &Texts,
        mut waiting: Vec<usize>,
        embedder: &mut dyn Embedder,
        checkpoint: &mut dyn FnMut() -> Result<()>,
        out: &mut Resolved,
    ) -> Result<()> {
        let mut pause = POLL_FIRST;
        while !waiting.is_empty() {
            std::thread::sleep(pause);
            pause = (pause * 2).min(POLL_MAX);
            checkpoint()?;
            waiting = self.round(t, &waiting, embedder, out)?;
        }
        Ok(())
    }

    /// Store the vectors of `idx` (this worker's claims) and drop the claims.
    fn put(&mut self, t: &Texts, idx: &[usize], out: &Resolved) {
        let own = self.own;
        let Some(store) = self.store.as_deref_mut() else {
            return;
        };
        let keys: Vec<TextKey> = idx.iter().map(|&i| t.keys[i]).collect();
        let values: Vec<Vec<u8>> = idx
            .iter()
            .map(|&i| {
                let v = &out.embeddings[i * EMBEDDING_DIM..(i + 1) * EMBEDDING_DIM];
                encode_entry(own, v, out.truncated[i], t.texts[i].len())
            })
            .collect();
        if let Err(e) = store.put(own, &keys, &values, &self.owner) {
            self.off(&e);
        }
    }

    fn compute(
        &self,
        texts: &[&str],
        idx: &[usize],
        embedder: &mut dyn Embedder,
        out: &mut Resolved,
    ) -> Result<()> {
        if idx.is_empty() {
            return Ok(());
        }
        let batch: Vec<&str> = idx.iter().map(|&i| texts[i]).collect();
        let enc = embedder.encode(&batch)?;
        self.fill(idx, &enc, out);
        Ok(())
    }

    fn fill(&self, idx: &[usize], enc: &Encoded, out: &mut Resolved) {
        for (k, &i) in idx.iter().enumerate() {
            let v = &enc.embeddings[k * EMBEDDING_DIM..(k + 1) * EMBEDDING_DIM];
            out.set(i, v, enc.truncated[k]);
            out.reused[i] = false;
            out.class[i] = self.own;
        }
        out.model_calls += idx.len() as u64;
    }

    /// Drop this worker's claims on `idx` (the job failed computing them).
    fn release(&mut self, t: &Texts, idx: &[usize]) {
        let own = self.own;
        let Some(store) = self.store.as_deref_mut() else {
            return;
        };
        let keys: Vec<TextKey> = idx.iter().map(|&i| t.keys[i]).collect();
        let empty = vec![Vec::new(); keys.len()];
        if let Err(e) = store.put(own, &keys, &empty, &self.owner) {
            self.off(&e);
        }
    }

    fn off(&mut self, e: &WorkerError) {
        log::warn!("{e}: computing every text of this job here, without the reuse store");
        self.store = None;
    }
}

/// A round's own texts (indices) and the device's answer for them.
struct Flight {
    idx: Vec<usize>,
    pending: Option<Pending>,
}

/// Start computing `idx` (`Embedder::submit`: queued on the device when it can).
fn send(t: &Texts, idx: Vec<usize>, embedder: &mut dyn Embedder) -> Flight {
    if idx.is_empty() {
        return Flight { idx, pending: None };
    }
    let batch: Vec<&str> = idx.iter().map(|&i| t.texts[i]).collect();
    let pending = Some(embedder.submit(&batch));
    Flight { idx, pending }
}

/// Use a stored value for text `i` if it checks out.
fn take(
    value: Option<&[u8]>,
    i: usize,
    t: &Texts,
    classes: &[Class],
    out: &mut Resolved,
    invalid: &mut usize,
) -> bool {
    let Some(value) = value else {
        return false;
    };
    match decode_entry(value, classes, t.texts[i].len()) {
        Some(entry) => {
            out.set(i, &entry.vector, entry.truncated);
            out.reused[i] = true;
            out.class[i] = entry.class;
            true
        }
        None => {
            *invalid += 1;
            false
        }
    }
}

fn warn_invalid(n: usize) {
    if n > 0 {
        log::warn!("reuse store: ignoring {n} invalid entries (recomputed and replaced)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reuse::MemoryReuseStore;
    use crate::stand_in::HashEmbedder;

    fn never() -> impl FnMut() -> Result<()> {
        || Ok(())
    }

    #[test]
    fn without_a_store_every_text_is_computed_in_one_call() {
        let mut e = HashEmbedder::new("m".into(), 0.0);
        let mut f = FleetReuse::new(None, "m", "fp32", "w1");
        let r = f.resolve(&["a", "b"], &mut e, &mut never()).unwrap();
        assert_eq!((r.model_calls, e.calls.clone()), (2, vec![2]));
        assert_eq!(r.reused, vec![false, false]);
    }

    #[test]
    fn a_second_job_reuses_what_the_first_stored() {
        let mut store = MemoryReuseStore::default();
        let mut e = HashEmbedder::new("m".into(), 0.0);
        let first = FleetReuse::new(Some(&mut store), "m", "fp32", "w1")
            .resolve(&["a", "bb", "c"], &mut e, &mut never())
            .unwrap();
        assert_eq!(first.model_calls, 3);
        let mut e2 = HashEmbedder::new("m".into(), 0.0);
        let mut f = FleetReuse::new(Some(&mut store), "m", "fp32", "w2");
        let second = f.resolve(&["bb", "a", "d"], &mut e2, &mut never()).unwrap();
        assert_eq!((second.model_calls, e2.calls), (1, vec![1]));
        assert_eq!(second.reused, vec![true, true, false]);
        let cos: f32 = (0..EMBEDDING_DIM)
            .map(|k| first.embeddings[EMBEDDING_DIM + k] * second.embeddings[k])
            .sum();
        assert!(cos > 0.99999);
    }

    #[test]
    fn texts_claimed_elsewhere_are_waited_for_then_computed_once_the_claim_lapses() {
        let mut store = MemoryReuseStore::default();
        let mut other = store.clone();
        let keys = [TextKeyer::new("m").key("x")];
        assert_eq!(
            other.claim(&keys, &[Class::Exact], "w2").unwrap(),
            vec![Claimed::Mine]
        );
        let lapse = store.clone();
        let mut asks = 0;
        let mut checkpoint = || {
            asks += 1;
            if asks == 3 {
                lapse.expire_claims();
            }
            Ok(())
        };
        let mut e = HashEmbedder::new("m".into(), 0.0);
        let mut f = FleetReuse::new(Some(&mut store), "m", "fp32", "w1");
        let r = f.resolve(&["x", "y"], &mut e, &mut checkpoint).unwrap();
        assert_eq!(e.calls, vec![1, 1], "y at once, x after the claim lapsed");
        assert_eq!(r.model_calls, 2);
        assert_eq!(asks, 3);
    }

    #[test]
    fn a_lost_lease_stops_the_wait() {
        let mut store = MemoryReuseStore::default();
        let mut other = store.clone();
        let keys = [TextKeyer::new("m").key("x")];
        other.claim(&keys, &[Class::Exact], "w2").unwrap();
        let mut e = HashEmbedder::new("m".into(), 0.0);
        let mut lost = || Err(WorkerError::LeaseLost("gone".into()));
        let mut f = FleetReuse::new(Some(&mut store), "m", "fp32", "w1");
        let err = f.resolve(&["x"], &mut e, &mut lost).unwrap_err();
        assert!(matches!(err, WorkerError::LeaseLost(_)));
        assert!(e.calls.is_empty());
    }

    #[test]
    fn a_store_fault_computes_everything_and_turns_the_store_off() {
        let mut store = MemoryReuseStore::default();
        store.fail(true);
        let mut e = HashEmbedder::new("m".into(), 0.0);
        let mut f = FleetReuse::new(Some(&mut store), "m", "fp32", "w1");
        let r = f.resolve(&["a", "b", "c"], &mut e, &mut never()).unwrap();
        assert_eq!(r.model_calls, 3);
        assert!(!f.active());
    }

    struct Failing;

    impl Embedder for Failing {
        fn model_id(&self) -> &str {
            "m"
        }
        fn device(&self) -> &str {
            "cpu"
        }
        fn precision(&self) -> &str {
            "fp32"
        }
        fn encode(&mut self, _: &[&str]) -> Result<crate::batching::Encoded> {
            Err(WorkerError::Transient("model failed".into()))
        }
    }

    #[test]
    fn a_failed_model_call_releases_the_claims() {
        let mut store = MemoryReuseStore::default();
        let mut f = FleetReuse::new(Some(&mut store), "m", "fp32", "w1");
        assert!(f.resolve(&["a"], &mut Failing, &mut never()).is_err());
        let keys = [TextKeyer::new("m").key("a")];
        let mut other = store.clone();
        assert_eq!(
            other.claim(&keys, &[Class::Exact], "w2").unwrap(),
            vec![Claimed::Mine],
            "the claim of w1 was dropped"
        );
    }

    /// Queues each round (`submit` returns at once) and fails the third.
    struct Queued {
        rounds: usize,
    }

    impl Embedder for Queued {
        fn model_id(&self) -> &str {
            "m"
        }
        fn device(&self) -> &str {
            "sim"
        }
        fn precision(&self) -> &str {
            "fp32"
        }
        fn encode(&mut self, texts: &[&str]) -> Result<crate::batching::Encoded> {
            self.submit(texts).wait()
        }
        fn submit(&mut self, texts: &[&str]) -> Pending {
            self.rounds += 1;
            let fail = self.rounds == 3;
            let owned: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
            Pending::Waiting(Box::new(move || {
                if fail {
                    return Err(WorkerError::Transient("device lost".into()));
                }
                let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
                HashEmbedder::new("m".into(), 0.0).encode(&refs)
            }))
        }
    }

    #[test]
    fn queued_rounds_give_the_vectors_of_rounds_in_turn() {
        let texts: Vec<String> = (0..9).map(|i| format!("t{i}")).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let mut store = MemoryReuseStore::default();
        let mut q = Queued { rounds: 10 };
        let got = FleetReuse::new(Some(&mut store), "m", "fp32", "w1")
            .with_round_texts(2)
            .resolve(&refs, &mut q, &mut never())
            .unwrap();
        let mut e = HashEmbedder::new("m".into(), 0.0);
        let plain = FleetReuse::new(None, "m", "fp32", "w1")
            .resolve(&refs, &mut e, &mut never())
            .unwrap();
        assert_eq!((got.model_calls, &got.embeddings), (9, &plain.embeddings));
        let keys: Vec<TextKey> = refs.iter().map(|t| TextKeyer::new("m").key(t)).collect();
        assert!(
            store
                .lookup(&keys, &[Class::Exact])
                .unwrap()
                .iter()
                .all(Option::is_some),
            "every round stored"
        );
    }

    #[test]
    fn a_device_failure_releases_the_claims_of_every_round_in_flight() {
        let texts: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let mut store = MemoryReuseStore::default();
        let mut f = FleetReuse::new(Some(&mut store), "m", "fp32", "w1").with_round_texts(2);
        assert!(f
            .resolve(&refs, &mut Queued { rounds: 0 }, &mut never())
            .is_err());
        let keyer = TextKeyer::new("m");
        let keys: Vec<TextKey> = refs.iter().map(|t| keyer.key(t)).collect();
        let stored = store
            .lookup(&keys, &[Class::Exact])
            .unwrap()
            .iter()
            .filter(|v| v.is_some())
            .count();
        assert_eq!(
            stored, 4,
            "the two rounds computed before the failure were stored"
        );
        let answers = store.clone().claim(&keys, &[Class::Exact], "w2").unwrap();
        assert!(
            !answers.contains(&Claimed::Theirs),
            "no claim of w1 is left for w2 to wait on: {answers:?}"
        );
    }

    #[test]
    fn an_int8_worker_reads_exact_entries_and_an_exact_worker_never_reads_int8() {
        let mut store = MemoryReuseStore::default();
        let mut e = HashEmbedder::new("m".into(), 0.0);
        FleetReuse::new(Some(&mut store), "m", "int8", "q1")
            .resolve(&["q-only"], &mut e, &mut never())
            .unwrap();
        FleetReuse::new(Some(&mut store), "m", "fp32", "e1")
            .resolve(&["e-only"], &mut e, &mut never())
            .unwrap();
        let mut q = HashEmbedder::new("m".into(), 0.0);
        let r = FleetReuse::new(Some(&mut store), "m", "int8", "q2")
            .resolve(&["e-only", "q-only"], &mut q, &mut never())
            .unwrap();
        assert_eq!(
            (r.model_calls, r.class.clone()),
            (0, vec![Class::Exact, Class::Int8])
        );
        let mut x = HashEmbedder::new("m".into(), 0.0);
        let r = FleetReuse::new(Some(&mut store), "m", "fp32", "e2")
            .resolve(&["q-only"], &mut x, &mut never())
            .unwrap();
        assert_eq!((r.model_calls, r.reused.clone()), (1, vec![false]));
    }
}
