//! The worker-parity vectors both suites load (`docs/parity.md`; the Python
//! twin is `tests/test_parity_vectors.py`): event types and their fields,
//! cleaning counts, the batch cut rule and the retry backoff.

use super::common;
use super::worker_loop;

use std::collections::BTreeSet;

use embedfleet_core::constants as c;
use embedfleet_worker::batching::{plan_batches, MAX_PADDING, PADDING_SLACK};
use embedfleet_worker::clean::{clean, Cell, Counts};
use embedfleet_worker::runtime::WorkerConfig;
use serde_json::Value;

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn event_type_constants_match_the_vector() {
    let v = common::vectors("events.json");
    let wanted: BTreeSet<String> = v["worker_types"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let ours: BTreeSet<String> = c::WORKER_EVENT_TYPES
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(ours, wanted);
    assert!(v["manager_types"].get(c::EVENT_OPERATOR_ACTION).is_some());
    assert_eq!(v["v"].as_u64(), Some(u64::from(c::EVENT_VERSION)));
    let names: BTreeSet<String> = Counts::NAMES.iter().map(|s| s.to_string()).collect();
    assert_eq!(names, strings(&v["counts"]), "the `counts` of job events");
}

/// Every event a burst worker sends has exactly the fields `events.json` gives
/// its type: the common ones, `job`/`path` when it is about a job, its own.
#[test]
fn events_a_worker_sends_carry_the_fields_of_the_vector() {
    let v = common::vectors("events.json");
    let d = worker_loop::root("parity-events");
    let mut bus = common::bus("parity-events", 60_000);
    let job = worker_loop::input(&d, "good", &["a", "b", "a"]);
    let rel = "chains/s/sub/broken.parquet";
    std::fs::write(d.join(rel), b"not parquet").unwrap();
    let fp = embedfleet_worker::paths::fingerprint(&d.join(rel)).unwrap();
    let bad =
        embedfleet_core::Job::create(rel, &fp, &job.model, None, "text", None, "default").unwrap();
    assert!(bus.enqueue(&job).unwrap() && bus.enqueue(&bad).unwrap());
    let (mut w, _) = worker_loop::worker(&bus, &d, |_, _| {});
    assert_eq!(w.run(), 0);
    let sent = worker_loop::events(&mut bus);
    let types: BTreeSet<&str> = sent.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        BTreeSet::from([
            c::EVENT_WORKER_STARTED,
            c::EVENT_JOB_DONE,
            c::EVENT_JOB_DEAD,
            c::EVENT_WORKER_STOPPED
        ])
    );
    for e in &sent {
        let spec = &v["worker_types"][e["type"].as_str().unwrap()];
        assert!(
            spec.is_object(),
            "event type {} is not in events.json",
            e["type"]
        );
        let mut required = strings(&v["common"]);
        if spec["about_job"].as_bool().unwrap() {
            required.extend(strings(&v["about_job"]));
        }
        required.extend(strings(&spec["fields"]));
        let optional = strings(&spec["optional"]);
        let got: BTreeSet<String> = e.as_object().unwrap().keys().cloned().collect();
        let extra: BTreeSet<&String> = got.difference(&required).collect();
        assert!(required.is_subset(&got), "{e} lacks some of {required:?}");
        assert!(
            extra.iter().all(|k| optional.contains(*k)),
            "{e} has fields outside events.json: {extra:?}"
        );
    }
}

fn expand(spec: &Value) -> (Option<String>, Option<Vec<u8>>) {
    let n = spec.get("repeat").and_then(Value::as_u64).unwrap_or(1) as usize;
    if let Some(t) = spec.get("text") {
        return (Some(t.as_str().unwrap().repeat(n)), None);
    }
    if let Some(h) = spec.get("bytes_hex") {
        return (None, Some(hex_bytes(h.as_str().unwrap()).repeat(n)));
    }
    (None, None)
}

fn hex_bytes(h: &str) -> Vec<u8> {
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn cleaning_counts_match_the_vector() {
    for case in common::vectors("cleaning.json").as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let cells: Vec<(Option<String>, Option<Vec<u8>>)> = case["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(expand)
            .collect();
        let raw = cells.iter().map(|c| match c {
            (Some(t), _) => Cell::Text(t),
            (_, Some(b)) => Cell::Bytes(b),
            _ => Cell::Null,
        });
        let got = clean(raw.collect::<Vec<_>>().into_iter());
        let positions: Vec<u64> = got.positions.iter().map(|&p| u64::from(p)).collect();
        let want: Vec<u64> = case["positions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_u64().unwrap())
            .collect();
        assert_eq!(positions, want, "{name}: positions");
        let texts: Vec<String> = case["texts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| expand(t).0.unwrap())
            .collect();
        let got_texts: Vec<String> = got.texts.iter().map(|t| t.to_string()).collect();
        assert!(got_texts == texts, "{name}: texts differ");
        for (k, want) in case["counts"].as_object().unwrap() {
            let have = got.counts.fields().iter().find(|(n, _)| n == k).unwrap().1;
            assert_eq!(have, want.as_u64().unwrap(), "{name}: {k}");
        }
    }
}

#[test]
fn the_batch_cut_rule_matches_the_vector() {
    let v = common::vectors("batching.json");
    assert_eq!(v["max_padding"].as_f64(), Some(MAX_PADDING));
    assert_eq!(v["padding_slack"].as_u64(), Some(PADDING_SLACK as u64));
    for case in v["cases"].as_array().unwrap() {
        let lengths: Vec<usize> = case["lengths"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        let budget = case["budget"].as_u64().unwrap() as usize;
        let max_batch = case["max_batch"].as_u64().unwrap() as usize;
        let want: Vec<Vec<usize>> = serde_json::from_value(case["batches"].clone()).unwrap();
        let got = plan_batches(&lengths, max_batch, |_| budget);
        assert_eq!(got, want, "{}", case["name"]);
    }
}

#[test]
fn retry_backoff_matches_the_vector() {
    let v = common::vectors("backoff.json");
    assert_eq!(
        v["defaults"]["base_ms"].as_u64(),
        Some(c::DEFAULT_RETRY_BASE_MS)
    );
    assert_eq!(
        v["defaults"]["max_ms"].as_u64(),
        Some(c::DEFAULT_RETRY_MAX_MS)
    );
    for config in v["configs"].as_array().unwrap() {
        let mut cfg = WorkerConfig::new("w".into(), "h".into(), vec!["default".into()]);
        cfg.retry_base_ms = config["base_ms"].as_u64().unwrap();
        cfg.retry_max_ms = config["max_ms"].as_u64().unwrap();
        for case in config["cases"].as_array().unwrap() {
            let delay = cfg.backoff_ms(case["attempts"].as_u64().unwrap());
            let (lo, hi) = (
                case["min_ms"].as_u64().unwrap(),
                case["max_ms"].as_u64().unwrap(),
            );
            assert!(
                (lo..=hi).contains(&delay),
                "attempts {}: {delay} ms outside [{lo}, {hi}]",
                case["attempts"]
            );
        }
    }
}
