//! Hostile job messages (`tests/vectors/hostile_messages.json`) against a
//! burst worker on a real Redis: each is dead-lettered with its reason, the
//! good jobs beside them are done, and the worker never waits as if Redis
//! were away (the Python suite runs the same vectors,
//! `tests/test_worker_hostile.py`).

use super::common;
use super::worker_loop::{input, root, stats, worker};

use std::collections::HashMap;
use std::fs;

use embedfleet_core::constants::{JOB_FIELD, MAX_MESSAGE_BYTES};
use embedfleet_core::Job;
use serde_json::Value;

/// The stream field value of a case (as `hostile_raw` in
/// `tests/vectors/generate.py`): `raw`, or the bytes of `raw_hex`, with
/// `@PAD@` grown to `pad_to_bytes`.
pub fn hostile_raw(case: &Value) -> Vec<u8> {
    if let Some(hex) = case.get("raw_hex").and_then(Value::as_str) {
        return (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
    }
    let raw = case["raw"].as_str().unwrap();
    match case.get("pad_to_bytes").and_then(Value::as_u64) {
        Some(n) => {
            let pad = "x".repeat(n as usize - raw.len() + "@PAD@".len());
            raw.replace("@PAD@", &pad).into_bytes()
        }
        None => raw.as_bytes().to_vec(),
    }
}

#[test]
fn every_hostile_message_is_dead_lettered_with_its_reason_at_full_speed() {
    let d = root("hostile");
    let mut bus = common::bus("hostile", 60_000);
    let good: Vec<Job> = (0..3)
        .map(|i| input(&d, &format!("good{i}"), &["a", "b"]))
        .collect();
    bus.ensure_lanes(&["default".to_string()]).unwrap();
    assert!(bus.enqueue(&good[0]).unwrap());
    let q = bus.keys().queue("default");
    let mut hostile = Vec::new(); // (entry id, case)
    for case in common::vectors("hostile_messages.json").as_array().unwrap() {
        let field = case
            .get("field")
            .and_then(Value::as_str)
            .unwrap_or(JOB_FIELD);
        let add = redis::cmd("XADD")
            .arg(&q)
            .arg("*")
            .arg(field)
            .arg(hostile_raw(case))
            .clone();
        let id: String = bus.query(&add).unwrap();
        hostile.push((id, case.clone()));
    }
    for j in &good[1..] {
        assert!(bus.enqueue(j).unwrap()); // good jobs on both sides of the hostile ones
    }

    let (mut w, _) = worker(&bus, &d, |_, _| {});
    assert_eq!(w.run(), 0);
    assert_eq!(
        w.reconnect_waits(),
        0,
        "the worker waited as if Redis were away"
    );

    let (errors, state) = (bus.keys().errors(), bus.keys().state());
    for (id, case) in &hostile {
        let name = case["name"].as_str().unwrap();
        let want = case["reason_starts_with"].as_str().unwrap();
        let reason: Option<String> = bus
            .query(redis::cmd("HGET").arg(&errors).arg(format!("entry:{id}")))
            .unwrap();
        let reason = reason.unwrap_or_else(|| panic!("{name}: not dead-lettered"));
        assert!(reason.starts_with(want), "{name}: {reason}");
        let s: Option<String> = bus
            .query(redis::cmd("HGET").arg(&state).arg(format!("entry:{id}")))
            .unwrap();
        assert_eq!(s.as_deref(), Some("x"), "{name}");
    }
    let letters: Vec<(String, HashMap<String, Vec<u8>>)> = bus
        .query(
            redis::cmd("XRANGE")
                .arg(bus.keys().dead())
                .arg("-")
                .arg("+"),
        )
        .unwrap();
    assert_eq!(letters.len(), hostile.len());
    assert!(
        letters
            .iter()
            .all(|(_, f)| f["job"].len() <= MAX_MESSAGE_BYTES),
        "a dead letter keeps at most 64 KiB of the message"
    );
    for j in &good {
        let s: Option<String> = bus
            .query(redis::cmd("HGET").arg(&state).arg(&j.id))
            .unwrap();
        assert_eq!(s.as_deref(), Some("d"), "{}", j.path);
    }
    let s = stats(&mut bus);
    assert_eq!((s["done"], s["dead"]), (3, hostile.len() as i64));
    fs::remove_dir_all(d).unwrap();
}
