//! The reuse store against a real Redis, with the stand-in embedder: two
//! workers over the same texts at once, a job over known texts, corrupt
//! entries, dead claim holders, the store's Redis going away, precision
//! classes, the byte ceiling, the counts in the bus's stats and events, and
//! `--no-reuse`.

use super::common;

use std::collections::HashMap;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, StringArray};
use clap::Parser;
use embedfleet_core::{Job, Keys};
use embedfleet_worker::batching::{Embedder, Encoded};
use embedfleet_worker::bus::RedisBus;
use embedfleet_worker::clean::Counts;
use embedfleet_worker::cli::{reuse_store, Args};
use embedfleet_worker::error::Result;
use embedfleet_worker::limits::MemoryBudget;
use embedfleet_worker::output::Provenance;
use embedfleet_worker::paths::{fingerprint, DataRoots};
use embedfleet_worker::pipeline::{JobResult, Pipeline};
use embedfleet_worker::reuse::{
    decode_entry, encode_entry, Class, RedisReuseStore, ReuseStore, ENTRY_BYTES,
};
use embedfleet_worker::runtime::{Worker, WorkerConfig};
use embedfleet_worker::settings::RedisSettings;
use embedfleet_worker::stand_in::HashEmbedder;
use embedfleet_worker::textkey::text_key;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;

const MODEL: &str = "all-MiniLM-L6-v2@0000000000000000";
const DIM: usize = 384;

type CallLog = Arc<Mutex<Vec<usize>>>;

/// The stand-in embedder with a precision of choice, recording the size of
/// each call where the test can read it, and running `hook` before each.
struct Probe {
    inner: HashEmbedder,
    precision: &'static str,
    calls: CallLog,
    hook: Option<Box<dyn FnMut() + Send>>,
}

fn probe(precision: &'static str, seconds_per_row: f64) -> (Box<Probe>, CallLog) {
    let calls = CallLog::default();
    let p = Probe {
        inner: HashEmbedder::new(MODEL.into(), seconds_per_row),
        precision,
        calls: Arc::clone(&calls),
        hook: None,
    };
    (Box::new(p), calls)
}

impl Embedder for Probe {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
    fn device(&self) -> &str {
        "cpu"
    }
    fn precision(&self) -> &str {
        self.precision
    }
    fn encode(&mut self, texts: &[&str]) -> Result<Encoded> {
        if let Some(hook) = self.hook.as_mut() {
            hook();
        }
        self.calls.lock().unwrap().push(texts.len());
        self.inner.encode(texts)
    }
}

fn texts_encoded(calls: &CallLog) -> usize {
    calls.lock().unwrap().iter().sum()
}

fn root(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ef-reuse-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(d.join("chains/s/sub")).unwrap();
    d
}

/// A parquet file of `texts` and its job.
fn input(root: &Path, name: &str, texts: &[&str]) -> Job {
    let rel = format!("chains/s/sub/{name}.parquet");
    let arr: ArrayRef = Arc::new(StringArray::from(texts.to_vec()));
    let batch = RecordBatch::try_from_iter(vec![("text", arr)]).unwrap();
    let file = fs::File::create(root.join(&rel)).unwrap();
    let mut w = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let fp = fingerprint(&root.join(&rel)).unwrap();
    Job::create(&rel, &fp, MODEL, None, "text", None, "default").unwrap()
}

/// `n` distinct texts of varied lengths.
fn corpus(tag: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{tag} message {i} {}", "x".repeat(i % 41)))
        .collect()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn settings(url: &str, ns: &str) -> RedisSettings {
    RedisSettings::from_url(url, Some(ns)).unwrap()
}

fn store(ns: &str) -> Box<RedisReuseStore> {
    Box::new(RedisReuseStore::new(settings(&common::redis_url(), ns)))
}

fn pipeline(
    root: &Path,
    worker_id: &str,
    embedder: Box<dyn Embedder>,
    reuse: Option<Box<dyn ReuseStore>>,
) -> Pipeline {
    Pipeline {
        roots: DataRoots::new(root, root),
        provenance: Provenance {
            worker_id: worker_id.into(),
            worker_kind: "rust".into(),
            device: "cpu".into(),
            precision: embedder.precision().into(),
            software_version: "0.1.0".into(),
        },
        embedder,
        memory: MemoryBudget::default(),
        chunk_rows: 1024,
        reuse,
    }
}

fn run(p: &mut Pipeline, job: &Job) -> JobResult {
    p.run(job, &mut || Ok(())).unwrap()
}

/// Rows add up: every row is a model call, a repeat of one, or reused.
fn check_sums(c: &Counts) {
    assert_eq!(
        c.rows_embedded,
        c.model_calls + c.rows_deduplicated + c.rows_reused,
        "{c:?}"
    );
    assert_eq!(c.rows_embedded, c.rows_exact + c.rows_int8, "{c:?}");
}

/// Every output row is the stand-in's vector of its text (within binary16).
fn check_output(root: &Path, job: &Job, texts: &[&str]) {
    let file = fs::File::open(root.join(&job.out)).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut got: Vec<f32> = Vec::new();
    for b in reader {
        let b = b.unwrap();
        let emb = b.column_by_name("embedding").unwrap();
        let list = emb.as_any().downcast_ref::<FixedSizeListArray>().unwrap();
        let values = list.values().as_any().downcast_ref::<Float32Array>();
        got.extend_from_slice(values.unwrap().values());
    }
    assert_eq!(got.len(), texts.len() * DIM);
    let want = HashEmbedder::new(MODEL.into(), 0.0).encode(texts).unwrap();
    for (i, text) in texts.iter().enumerate() {
        let r = i * DIM..(i + 1) * DIM;
        let cos: f32 = got[r.clone()]
            .iter()
            .zip(&want.embeddings[r])
            .map(|(a, b)| a * b)
            .sum();
        assert!(cos >= 0.99999, "row {i} ({text:?}): cosine {cos}");
    }
}

fn redis_conn(url: &str) -> redis::Connection {
    redis::Client::open(url).unwrap().get_connection().unwrap()
}

fn reuse_keys(ns: &str) -> Vec<String> {
    let mut c = redis_conn(&common::redis_url());
    redis::cmd("KEYS")
        .arg(format!("{ns}:r:*"))
        .query(&mut c)
        .unwrap()
}

#[test]
fn two_workers_over_the_same_texts_at_once_embed_each_distinct_text_once() {
    let d = root("pair");
    let ns = common::namespace("reuse-pair");
    let texts = corpus("pair", 1500);
    let mut a_rows = refs(&texts);
    a_rows.extend(refs(&texts).into_iter().step_by(3)); // repeats within the job
    let mut b_rows = refs(&texts);
    b_rows.reverse();
    let (ja, jb) = (input(&d, "a", &a_rows), input(&d, "b", &b_rows));
    let (ea, calls_a) = probe("fp32", 20e-6);
    let (eb, calls_b) = probe("fp32", 20e-6);
    let mut pa = pipeline(&d, "rust-a", ea, Some(store(&ns)));
    let mut pb = pipeline(&d, "rust-b", eb, Some(store(&ns)));
    let (ra, rb) = std::thread::scope(|s| {
        let a = s.spawn(|| run(&mut pa, &ja));
        let b = s.spawn(|| run(&mut pb, &jb));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(
        texts_encoded(&calls_a) + texts_encoded(&calls_b),
        texts.len(),
        "each distinct text went through the model once in the fleet"
    );
    assert_eq!(
        (ra.counts.model_calls + rb.counts.model_calls) as usize,
        texts.len()
    );
    assert_eq!(ra.counts.rows_embedded as usize, a_rows.len());
    for (r, calls) in [(&ra, &calls_a), (&rb, &calls_b)] {
        check_sums(&r.counts);
        assert!(
            calls.lock().unwrap().iter().all(|&n| n <= 512),
            "one model call per round of 512 texts"
        );
    }
    check_output(&d, &ja, &a_rows);
    check_output(&d, &jb, &b_rows);
    fs::remove_dir_all(d).unwrap();
}

#[test]
fn a_second_file_of_known_texts_makes_no_model_call_and_matches_a_run_without_reuse() {
    let d = root("known");
    let ns = common::namespace("reuse-known");
    let texts = corpus("known", 300);
    let first = input(&d, "first", &refs(&texts));
    let (e1, _) = probe("fp32", 0.0);
    run(&mut pipeline(&d, "rust-1", e1, Some(store(&ns))), &first);
    let mut rows: Vec<&str> = refs(&texts).into_iter().rev().step_by(2).collect();
    rows.extend(["known message 7 xxxxxxx", "known message 7 xxxxxxx"]);
    let second = input(&d, "second", &rows);
    let (e2, calls) = probe("fp32", 0.0);
    let r = run(&mut pipeline(&d, "rust-2", e2, Some(store(&ns))), &second);
    assert!(calls.lock().unwrap().is_empty(), "no model call");
    let c = r.counts;
    assert_eq!((c.model_calls, c.rows_deduplicated), (0, 0));
    assert_eq!(
        (c.rows_reused, c.rows_exact, c.rows_int8),
        (rows.len() as u64, rows.len() as u64, 0)
    );
    check_output(&d, &second, &rows);
}

#[test]
fn a_corrupt_entry_is_ignored_recomputed_and_replaced() {
    let d = root("corrupt");
    let ns = common::namespace("reuse-corrupt");
    let key = Keys::new(&ns).reuse_entry("e", &text_key(MODEL, "x"));
    let mut c = redis_conn(&common::redis_url());
    redis::cmd("SET")
        .arg(&key)
        .arg(b"\x01\x00\x00\x00\x01\x00\x00\x00 too short".as_slice())
        .query::<()>(&mut c)
        .unwrap();
    let job = input(&d, "c", &["x", "y", "x"]);
    let (e, calls) = probe("fp32", 0.0);
    let r = run(&mut pipeline(&d, "rust-c", e, Some(store(&ns))), &job);
    assert_eq!(texts_encoded(&calls), 2);
    assert_eq!(
        (
            r.counts.model_calls,
            r.counts.rows_reused,
            r.counts.rows_deduplicated
        ),
        (2, 0, 1)
    );
    check_output(&d, &job, &["x", "y", "x"]);
    let value: Vec<u8> = redis::cmd("GET").arg(&key).query(&mut c).unwrap();
    assert_eq!(value.len(), ENTRY_BYTES, "the bad entry was overwritten");
    assert!(decode_entry(&value, &[Class::Exact], 1).is_some());
}

#[test]
fn a_claim_whose_holder_died_lapses_and_the_text_is_computed_here() {
    let d = root("lapse");
    let ns = common::namespace("reuse-lapse");
    let claim = Keys::new(&ns).reuse_claim("e", &text_key(MODEL, "x"));
    let mut c = redis_conn(&common::redis_url());
    redis::cmd("SET")
        .arg(&claim)
        .arg("ghost-worker")
        .arg("PX")
        .arg(300)
        .query::<()>(&mut c)
        .unwrap();
    let job = input(&d, "l", &["x", "y"]);
    let (e, calls) = probe("fp32", 0.0);
    let r = run(&mut pipeline(&d, "rust-l", e, Some(store(&ns))), &job);
    assert_eq!(
        *calls.lock().unwrap(),
        vec![1, 1],
        "y at once, x once the claim lapsed"
    );
    assert_eq!(r.counts.model_calls, 2);
    check_output(&d, &job, &["x", "y"]);
    assert_eq!(
        reuse_keys(&ns).len(),
        3,
        "two entries and r:bytes, no claim left"
    );
}

/// A private redis-server on a free port (the store's own Redis in a test
/// that kills it).
fn private_redis() -> (Child, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is not installed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(25));
    }
    (child, format!("redis://127.0.0.1:{port}/0"))
}

#[test]
fn a_job_completes_with_correct_outputs_when_the_stores_redis_dies_mid_job() {
    let d = root("died");
    let ns = common::namespace("reuse-died");
    let (server, url) = private_redis();
    let server = Arc::new(Mutex::new(Some(server)));
    let texts = corpus("died", 2000);
    let job = input(&d, "d", &refs(&texts));
    let (mut e, calls) = probe("fp32", 0.0);
    let killer = Arc::clone(&server);
    e.hook = Some(Box::new(move || {
        if let Some(mut child) = killer.lock().unwrap().take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }));
    let s = Box::new(RedisReuseStore::new(settings(&url, &ns)));
    let r = run(&mut pipeline(&d, "rust-d", e, Some(s)), &job);
    assert!(
        server.lock().unwrap().is_none(),
        "the store's Redis was killed"
    );
    assert_eq!(texts_encoded(&calls), texts.len());
    assert_eq!((r.counts.model_calls, r.counts.rows_reused), (2000, 0));
    check_sums(&r.counts);
    check_output(&d, &job, &refs(&texts));
}

#[test]
fn a_job_completes_when_the_stores_redis_is_unreachable() {
    let d = root("away");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}/0"); // nothing listens there
    let job = input(&d, "u", &["a", "b", "a"]);
    let (e, calls) = probe("fp32", 0.0);
    let s = Box::new(RedisReuseStore::new(settings(&url, "away")));
    let r = run(&mut pipeline(&d, "rust-u", e, Some(s)), &job);
    assert_eq!(*calls.lock().unwrap(), vec![2]);
    assert_eq!((r.counts.model_calls, r.counts.rows_deduplicated), (2, 1));
    check_output(&d, &job, &["a", "b", "a"]);
}

#[test]
fn an_int8_worker_reuses_exact_entries_and_an_exact_worker_never_reuses_int8_ones() {
    let d = root("classes");
    let ns = common::namespace("reuse-classes");
    let (exact, _) = probe("fp32", 0.0);
    run(
        &mut pipeline(&d, "rust-e", exact, Some(store(&ns))),
        &input(&d, "e1", &["a"]),
    );
    let (int8, calls) = probe("int8", 0.0);
    let r = run(
        &mut pipeline(&d, "rust-q", int8, Some(store(&ns))),
        &input(&d, "q1", &["a", "b"]),
    );
    assert_eq!(
        *calls.lock().unwrap(),
        vec![1],
        "a came from the exact entry"
    );
    let c = r.counts;
    assert_eq!(
        (c.model_calls, c.rows_reused, c.rows_exact, c.rows_int8),
        (1, 1, 1, 1)
    );
    let (exact, calls) = probe("fp32", 0.0);
    let r = run(
        &mut pipeline(&d, "rust-e2", exact, Some(store(&ns))),
        &input(&d, "e2", &["b"]),
    );
    assert_eq!(
        *calls.lock().unwrap(),
        vec![1],
        "the int8 entry of b is not for an exact worker"
    );
    assert_eq!((r.counts.rows_reused, r.counts.rows_exact), (0, 1));
    let k = Keys::new(&ns);
    let mut keys = reuse_keys(&ns);
    keys.sort();
    let mut want = vec![
        k.reuse_entry("e", &text_key(MODEL, "a")),
        k.reuse_entry("e", &text_key(MODEL, "b")),
        k.reuse_entry("q", &text_key(MODEL, "b")),
        k.reuse_bytes(),
    ];
    want.sort();
    assert_eq!(keys, want);
}

#[test]
fn the_store_stops_writing_at_its_ceiling_and_still_replaces_entries() {
    let ns = common::namespace("reuse-ceiling");
    let k = Keys::new(&ns);
    let keys: Vec<[u8; 16]> = ["a", "b", "c"].iter().map(|t| text_key(MODEL, t)).collect();
    let unit: Vec<f32> = (0..DIM).map(|i| if i == 0 { 1.0 } else { 0.0 }).collect();
    let value = encode_entry(Class::Exact, &unit, false, 1);
    let cost = (k.reuse_entry("e", &keys[0]).len() + ENTRY_BYTES + 200) as u64;
    let mut c = redis_conn(&common::redis_url());
    redis::cmd("SET")
        .arg(k.reuse_max())
        .arg(2 * cost + 1)
        .query::<()>(&mut c)
        .unwrap();
    let mut s = RedisReuseStore::new(settings(&common::redis_url(), &ns));
    let values = vec![value.clone(); 3];
    assert_eq!(s.put(Class::Exact, &keys, &values, "w").unwrap(), 2);
    assert_eq!(s.used_bytes().unwrap(), 2 * cost);
    assert_eq!(
        s.put(Class::Exact, &keys[..1], &values[..1], "w").unwrap(),
        1,
        "replaced"
    );
    assert_eq!(s.used_bytes().unwrap(), 2 * cost);
    let found = s.lookup(&keys, &[Class::Exact]).unwrap();
    assert_eq!(found.iter().filter(|v| v.is_some()).count(), 2);
}

// -- the worker loop: counts in stats and events; --no-reuse ---------------

fn worker(bus: &RedisBus, root: &Path, reuse: Option<Box<dyn ReuseStore>>) -> Worker {
    let (e, _) = probe("fp32", 0.0);
    let pipeline = pipeline(root, "rust-loop", e, reuse);
    let mut cfg = WorkerConfig::new(
        "rust-loop".into(),
        "test-host".into(),
        vec!["default".into()],
    );
    cfg.burst = true;
    cfg.block_ms = 50;
    cfg.controls_every = Duration::from_millis(50);
    let bus = bus.sibling().with_autoclaim_every(Duration::ZERO);
    Worker::new(bus, pipeline, cfg, Arc::new(AtomicBool::new(false)))
}

fn stats(bus: &mut RedisBus) -> HashMap<String, i64> {
    bus.stats().unwrap().into_iter().collect()
}

fn job_done_counts(bus: &mut RedisBus) -> Vec<serde_json::Value> {
    let entries: Vec<(String, HashMap<String, String>)> = bus
        .query(
            redis::cmd("XRANGE")
                .arg(bus.keys().events())
                .arg("-")
                .arg("+"),
        )
        .unwrap();
    entries
        .iter()
        .map(|(_, f)| serde_json::from_str::<serde_json::Value>(&f["event"]).unwrap())
        .filter(|e| e["type"] == "job_done")
        .map(|e| e["counts"].clone())
        .collect()
}

#[test]
fn the_worker_counts_model_calls_and_reused_rows_in_stats_and_events() {
    let d = root("loop");
    let mut bus = common::bus("reuse-loop", 60_000);
    let ns = bus.settings().namespace.clone();
    for (name, rows) in [
        ("one", vec!["a", "b", "c", "a"]),
        ("two", vec!["a", "b", "d"]),
    ] {
        assert!(bus.enqueue(&input(&d, name, &rows)).unwrap());
    }
    assert_eq!(worker(&bus, &d, Some(store(&ns))).run(), 0);
    let s = stats(&mut bus);
    assert_eq!(
        (s["done"], s["rows"], s["model_calls"], s["rows_reused"]),
        (2, 7, 4, 2)
    );
    let counts = job_done_counts(&mut bus);
    assert_eq!(counts.len(), 2);
    assert_eq!(
        (
            counts[0]["model_calls"].as_u64(),
            counts[0]["rows_deduplicated"].as_u64()
        ),
        (Some(3), Some(1))
    );
    assert_eq!(
        (
            counts[1]["model_calls"].as_u64(),
            counts[1]["rows_reused"].as_u64()
        ),
        (Some(1), Some(2))
    );
    assert_eq!(counts[1]["rows_exact"].as_u64(), Some(3));
}

#[test]
fn no_reuse_writes_no_reuse_keys() {
    let d = root("off");
    let mut bus = common::bus("reuse-off", 60_000);
    let ns = bus.settings().namespace.clone();
    for (name, rows) in [
        ("one", vec!["a", "b", "c", "a"]),
        ("two", vec!["a", "b", "d"]),
    ] {
        assert!(bus.enqueue(&input(&d, name, &rows)).unwrap());
    }
    let args = Args::try_parse_from(["embedfleet-worker", "--no-reuse"]).unwrap();
    let off = reuse_store(&args, bus.settings()).unwrap();
    assert!(off.is_none());
    assert_eq!(worker(&bus, &d, off).run(), 0);
    let s = stats(&mut bus);
    assert_eq!((s["done"], s["model_calls"], s["rows_reused"]), (2, 6, 0));
    assert!(
        reuse_keys(&ns).is_empty(),
        "no look-up, claim or write left a key"
    );
}

#[test]
fn the_reuse_flags_are_documented_and_the_environment_switches_reuse_off() {
    let exe = env!("CARGO_BIN_EXE_embedfleet-worker");
    let help = Command::new(exe).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--no-reuse",
        "--reuse-url",
        "EMBEDFLEET_REUSE=0",
        "EMBEDFLEET_REUSE_URL",
    ] {
        assert!(help.contains(flag), "--help does not mention {flag}");
    }
    let bus = settings(&common::redis_url(), "flags");
    let on = Args::try_parse_from(["embedfleet-worker"]).unwrap();
    assert!(reuse_store(&on, &bus).unwrap().is_some(), "on by default");
    let bad = Args::try_parse_from(["embedfleet-worker", "--reuse-url", "http://x"]).unwrap();
    assert!(
        reuse_store(&bad, &bus).is_err(),
        "a bad --reuse-url is a usage error"
    );
    // EMBEDFLEET_REUSE=0, in a child process (the test's own environment
    // is shared by every test thread): the start-up log says the store is off.
    let d = root("env");
    let out = Command::new(exe)
        .env("EMBEDFLEET_REUSE", "0")
        .env_remove("EMBEDFLEET_REUSE_URL")
        .args(["--redis-url", "redis://127.0.0.1:1/0", "--data-root"])
        .arg(&d)
        .args(["--model-dir", "/nonexistent-model-dir"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("reuse store: off"), "{err}");
}
