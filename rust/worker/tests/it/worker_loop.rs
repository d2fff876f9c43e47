//! The worker loop against a real Redis with a stand-in embedder: draining a
//! queue, dead letters with reasons, retries with backoff, take-over of a
//! dead worker's job, skipping up-to-date outputs, pause and drain, the
//! registry and the events.

use super::common;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use embedfleet_core::Job;
use embedfleet_worker::bus::RedisBus;
use embedfleet_worker::limits::MemoryBudget;
use embedfleet_worker::output::Provenance;
use embedfleet_worker::paths::{fingerprint, DataRoots};
use embedfleet_worker::pipeline::Pipeline;
use embedfleet_worker::runtime::{Worker, WorkerConfig};
use parquet::arrow::ArrowWriter;

const MODEL: &str = "all-MiniLM-L6-v2@0000000000000000";

pub(super) fn root(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ef-loop-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(d.join("chains/s/sub")).unwrap();
    d
}

pub(super) fn input(root: &Path, name: &str, texts: &[&str]) -> Job {
    let rel = format!("chains/s/sub/{name}.parquet");
    let arr: ArrayRef = Arc::new(StringArray::from(texts.to_vec()));
    let batch = RecordBatch::try_from_iter(vec![("text", arr)]).unwrap();
    let mut w = ArrowWriter::try_new(
        fs::File::create(root.join(&rel)).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    Job::create(
        &rel,
        &fingerprint(&root.join(&rel)).unwrap(),
        MODEL,
        None,
        "text",
        None,
        "default",
    )
    .unwrap()
}

pub(super) fn worker(
    bus: &RedisBus,
    root: &Path,
    tune: impl FnOnce(&mut WorkerConfig, &mut Pipeline),
) -> (Worker, Arc<AtomicBool>) {
    let mut pipeline = Pipeline {
        roots: DataRoots::new(root, root),
        embedder: common::hash_embedder(MODEL),
        provenance: Provenance {
            worker_id: "rust-loop".into(),
            worker_kind: "rust".into(),
            device: "cpu".into(),
            precision: "fp32".into(),
            software_version: "0.1.0".into(),
        },
        memory: MemoryBudget::default(),
        chunk_rows: 1024,
        reuse: None,
    };
    let mut cfg = WorkerConfig::new(
        "rust-loop".into(),
        "test-host".into(),
        vec!["default".into()],
    );
    cfg.burst = true;
    cfg.block_ms = 50;
    cfg.controls_every = Duration::from_millis(50);
    cfg.retry_base_ms = 50;
    cfg.retry_max_ms = 100;
    tune(&mut cfg, &mut pipeline);
    let stop = Arc::new(AtomicBool::new(false));
    let bus = bus.sibling().with_autoclaim_every(Duration::ZERO);
    (Worker::new(bus, pipeline, cfg, Arc::clone(&stop)), stop)
}

pub(super) fn stats(bus: &mut RedisBus) -> HashMap<String, i64> {
    bus.stats().unwrap().into_iter().collect()
}

pub(super) fn events(bus: &mut RedisBus) -> Vec<serde_json::Value> {
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
        .map(|(_, f)| serde_json::from_str(&f["event"]).unwrap())
        .collect()
}

fn dead_reasons(bus: &mut RedisBus) -> Vec<String> {
    let entries: Vec<(String, HashMap<String, String>)> = bus
        .query(
            redis::cmd("XRANGE")
                .arg(bus.keys().dead())
                .arg("-")
                .arg("+"),
        )
        .unwrap();
    entries
        .into_iter()
        .map(|(_, f)| f["reason"].clone())
        .collect()
}

#[test]
fn drains_a_queue_counting_every_job_once_and_dead_letters_bad_input() {
    let d = root("drain");
    let mut bus = common::bus("drain", 60_000);
    let good: Vec<Job> = (0..3)
        .map(|i| input(&d, &format!("g{i}"), &["a", "b", "a"]))
        .collect();
    let rel = "chains/s/sub/broken.parquet";
    fs::write(d.join(rel), b"not a parquet file").unwrap();
    let bad = Job::create(
        rel,
        &fingerprint(&d.join(rel)).unwrap(),
        MODEL,
        None,
        "text",
        None,
        "default",
    )
    .unwrap();
    for j in good.iter().chain([&bad]) {
        assert!(bus.enqueue(j).unwrap());
    }
    let (mut w, _) = worker(&bus, &d, |_, _| {});
    assert_eq!(w.run(), 0);
    let s = stats(&mut bus);
    assert_eq!((s["done"], s["dead"], s["queued"], s["rows"]), (3, 1, 0, 9));
    let reasons = dead_reasons(&mut bus);
    assert_eq!(reasons.len(), 1);
    assert!(
        reasons[0].starts_with(&format!("{rel}: not a readable parquet file")),
        "{}",
        reasons[0]
    );
    for j in &good {
        assert!(d.join(&j.out).is_file());
    }
    let kinds: Vec<String> = events(&mut bus)
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds.first().map(String::as_str), Some("worker_started"));
    assert_eq!(kinds.last().map(String::as_str), Some("worker_stopped"));
    assert_eq!(kinds.iter().filter(|k| *k == "job_done").count(), 3);
    assert_eq!(kinds.iter().filter(|k| *k == "job_dead").count(), 1);
    let done = events(&mut bus)
        .into_iter()
        .find(|e| e["type"] == "job_done")
        .unwrap();
    assert_eq!(
        (done["kind"].as_str(), done["rows"].as_u64()),
        (Some("rust"), Some(3))
    );
    assert_eq!(done["counts"]["rows_deduplicated"].as_u64(), Some(1));
    let eids: std::collections::HashSet<String> = events(&mut bus)
        .iter()
        .map(|e| {
            e["eid"]
                .as_str()
                .expect("every event has an eid")
                .to_string()
        })
        .collect();
    assert_eq!(eids.len(), kinds.len(), "each event has its own eid");
    let registered: HashMap<String, String> = bus
        .query(redis::cmd("HGETALL").arg(bus.keys().workers()))
        .unwrap();
    assert!(registered.is_empty(), "a clean exit deregisters the worker");
    fs::remove_dir_all(d).unwrap();
}

#[test]
fn a_transient_failure_is_retried_with_backoff_then_dead_lettered() {
    let d = root("retry");
    let mut bus = common::bus("retry", 60_000);
    let j = input(&d, "big", &["x"]);
    bus.enqueue(&j).unwrap();
    let (mut w, _) = worker(&bus, &d, |cfg, p| {
        cfg.max_deliveries = 2;
        p.memory = MemoryBudget::new(Some(1)); // no room: the part is refused, for another worker
    });
    assert_eq!(w.run(), 0);
    let s = stats(&mut bus);
    assert_eq!(
        (s["retried"], s["dead"], s.get("done").copied().unwrap_or(0)),
        (1, 1, 0)
    );
    let reasons = dead_reasons(&mut bus);
    assert!(
        reasons[0].contains("--max-memory") && reasons[0].starts_with(&j.path),
        "{reasons:?}"
    );
    let retry = events(&mut bus)
        .into_iter()
        .find(|e| e["type"] == "job_retry")
        .unwrap();
    assert_eq!(
        (retry["attempt"].as_u64(), retry["delay_ms"].as_u64()),
        (Some(1), Some(50))
    );
    fs::remove_dir_all(d).unwrap();
}

#[test]
fn a_dead_workers_job_is_taken_over_and_a_poison_job_dead_lettered() {
    let d = root("takeover");
    let mut bus = common::bus("takeover", 100);
    let ok = input(&d, "ok", &["fine"]);
    let poison = input(&d, "poison", &["boom"]);
    bus.enqueue(&ok).unwrap();
    let lanes = vec!["default".to_string()];
    bus.ensure_lanes(&lanes).unwrap();
    let ghost = bus.claim("ghost", &lanes, 10).unwrap().unwrap(); // claimed, then its worker "dies"
    assert_eq!(ghost.job.id, ok.id);
    std::thread::sleep(Duration::from_millis(200));
    let (mut w, _) = worker(&bus, &d, |cfg, _| cfg.lease_ms = 100);
    assert_eq!(w.run(), 0);
    assert_eq!(
        stats(&mut bus)["done"],
        1,
        "the expired lease was taken over"
    );
    assert!(!bus
        .complete("ghost", &ghost, 1, false)
        .unwrap()
        .eq(&embedfleet_worker::bus::Outcome::Done));

    bus.enqueue(&poison).unwrap();
    bus.claim("ghost", &lanes, 10).unwrap().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let (mut w, _) = worker(&bus, &d, |cfg, _| {
        cfg.lease_ms = 100;
        cfg.max_deliveries = 1;
    });
    assert_eq!(w.run(), 0);
    let reasons = dead_reasons(&mut bus);
    assert_eq!(
        reasons,
        vec![format!("{}: worker died 1 times running it", poison.path)]
    );
    fs::remove_dir_all(d).unwrap();
}

#[test]
fn a_burst_worker_leaves_empty_lanes_without_waiting_out_a_claim() {
    // A claim would block a whole minute: the burst run must see the empty
    // lanes and leave (the Python worker's twin test says the same).
    let d = root("burst");
    let mut bus = common::bus("burst", 60_000);
    for i in 0..2 {
        bus.enqueue(&input(&d, &format!("b{i}"), &["a", "b"]))
            .unwrap();
    }
    let (mut w, _) = worker(&bus, &d, |cfg, _| cfg.block_ms = 60_000);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        w.run();
        tx.send(()).unwrap();
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(30)).is_ok(),
        "the burst worker was still waiting on an empty queue"
    );
    assert_eq!(stats(&mut bus)["done"], 2);
    fs::remove_dir_all(d).unwrap();
}

#[test]
fn an_up_to_date_output_is_acknowledged_without_recomputing() {
    let d = root("skip");
    let mut bus = common::bus("skip", 60_000);
    let j = input(&d, "s", &["a", "b"]);
    bus.enqueue(&j).unwrap();
    let (mut w, _) = worker(&bus, &d, |_, _| {});
    w.run();
    let k = bus.keys().clone();
    let _: i64 = bus
        .query(redis::cmd("HSET").arg(k.state()).arg(&j.id).arg("q"))
        .unwrap();
    let _: String = bus
        .query(
            redis::cmd("XADD")
                .arg(k.queue("default"))
                .arg("*")
                .arg("job")
                .arg(j.to_json()),
        )
        .unwrap();
    let (mut w, _) = worker(&bus, &d, |_, _| {});
    w.run();
    let s = stats(&mut bus);
    assert_eq!((s["skipped_existing"], s["done"]), (1, 2));
    assert!(events(&mut bus)
        .iter()
        .any(|e| e["type"] == "job_skipped" && e["rows"] == 2));
    fs::remove_dir_all(d).unwrap();
}

#[test]
fn a_paused_worker_takes_nothing_and_a_drain_makes_it_exit() {
    let d = root("pause");
    let mut bus = common::bus("pause", 60_000);
    let j = input(&d, "p", &["a"]);
    bus.enqueue(&j).unwrap();
    let control = bus.keys().control();
    let _: i64 = bus
        .query(redis::cmd("HSET").arg(&control).arg("paused").arg("1"))
        .unwrap();
    let (mut w, stop) = worker(&bus, &d, |cfg, _| cfg.heartbeat = Duration::from_millis(50));
    let handle = std::thread::spawn(move || w.run());
    std::thread::sleep(Duration::from_millis(400));
    let record: Option<String> = bus
        .query(
            redis::cmd("HGET")
                .arg(bus.keys().workers())
                .arg("rust-loop"),
        )
        .unwrap();
    let record: serde_json::Value =
        serde_json::from_str(&record.expect("registered while running")).unwrap();
    assert_eq!(
        (record["state"].as_str(), record["kind"].as_str()),
        (Some("paused"), Some("rust"))
    );
    assert_eq!(
        record["precision"].as_str(),
        None,
        "extra fields only when configured"
    );
    stop.store(true, Ordering::SeqCst);
    assert_eq!(handle.join().unwrap(), 0);
    assert_eq!(
        stats(&mut bus).get("done").copied().unwrap_or(0),
        0,
        "paused: nothing taken"
    );

    let _: i64 = bus
        .query(redis::cmd("HDEL").arg(&control).arg("paused"))
        .unwrap();
    let _: i64 = bus
        .query(redis::cmd("HSET").arg(&control).arg("drain").arg("1"))
        .unwrap();
    let (mut w, _) = worker(&bus, &d, |cfg, _| cfg.burst = false);
    assert_eq!(w.run(), 0, "drain: the worker exits between jobs");
    assert_eq!(stats(&mut bus).get("done").copied().unwrap_or(0), 0);
    fs::remove_dir_all(d).unwrap();
}
