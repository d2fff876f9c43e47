//! The shared protocol vectors (`tests/vectors/*.json`) against the Rust core
//! the worker uses: job ids, output paths, wire form, path safety, keys, and
//! refused messages.

use super::common;

use embedfleet_core::{check_relative, Job, Keys};

#[test]
fn job_ids_outputs_and_wire_form_match_vectors() {
    for case in common::vectors("jobs.json").as_array().unwrap() {
        let inp = &case["input"];
        let rows = inp["rows"]
            .as_array()
            .map(|r| (r[0].as_u64().unwrap(), r[1].as_u64().unwrap()));
        let job = Job::create(
            inp["path"].as_str().unwrap(),
            inp["fingerprint"].as_str().unwrap(),
            inp["model"].as_str().unwrap(),
            rows,
            inp.get("column").and_then(|c| c.as_str()).unwrap_or("text"),
            inp.get("id_column").and_then(|c| c.as_str()),
            inp.get("lane")
                .and_then(|c| c.as_str())
                .unwrap_or("default"),
        )
        .unwrap();
        assert_eq!(job.id, case["id"].as_str().unwrap());
        assert_eq!(job.out, case["out"].as_str().unwrap());
        assert_eq!(job.to_json(), case["json"].as_str().unwrap());
        assert_eq!(Job::from_json(case["json"].as_str().unwrap()).unwrap(), job);
        let retry = job.next_attempt(2);
        assert_eq!(retry.to_json(), case["retry_json"].as_str().unwrap());
        assert_eq!(
            Job::from_json(case["retry_json"].as_str().unwrap()).unwrap(),
            retry
        );
        let v1 = Job::from_json(case["v1_json"].as_str().unwrap()).unwrap();
        assert_eq!(v1, job, "version 1 messages are still read");
    }
}

#[test]
fn path_safety_matches_vectors() {
    for case in common::vectors("paths.json").as_array().unwrap() {
        let path = case["path"].as_str().unwrap();
        assert_eq!(
            check_relative(path).is_ok(),
            case["ok"].as_bool().unwrap(),
            "{path:?}"
        );
    }
}

#[test]
fn bad_messages_are_refused_with_a_reason() {
    for case in common::vectors("bad_messages.json").as_array().unwrap() {
        let err = Job::from_json(case["raw"].as_str().unwrap())
            .unwrap_err()
            .to_string();
        let want = case["error_contains"].as_str().unwrap();
        assert!(err.contains(want), "{err:?} does not say {want:?}");
    }
}

#[test]
fn hostile_messages_are_refused_with_their_stable_reason() {
    for case in common::vectors("hostile_messages.json").as_array().unwrap() {
        if case.get("field").is_some() {
            continue; // a stream entry without a job field: the bus's case
        }
        let name = case["name"].as_str().unwrap();
        let err = Job::from_bytes(&super::hostile::hostile_raw(case))
            .expect_err(name)
            .to_string();
        let want = case["reason_starts_with"].as_str().unwrap();
        assert!(
            err.starts_with(want),
            "{name}: {err:?} does not start with {want:?}"
        );
    }
}

#[test]
fn keys_match_vectors() {
    let v = common::vectors("keys.json");
    let k = Keys::new(v["namespace"].as_str().unwrap());
    let lane = v["lane"].as_str().unwrap();
    assert_eq!(k.queue(lane), v["queue"].as_str().unwrap());
    assert_eq!(k.delayed(lane), v["delayed"].as_str().unwrap());
    let named = [
        ("state", k.state()),
        ("stats", k.stats()),
        ("dead", k.dead()),
        ("errors", k.errors()),
        ("workers", k.workers()),
        ("workers_seen", k.workers_seen()),
        ("control", k.control()),
        ("events", k.events()),
        ("lanes", k.lanes()),
        ("lock_reconcile", k.lock_reconcile()),
        ("reuse_bytes", k.reuse_bytes()),
        ("reuse_max", k.reuse_max()),
    ];
    for (name, key) in named {
        assert_eq!(key, v[name].as_str().unwrap(), "{name}");
    }
    let (class, hex) = (
        v["reuse_class"].as_str().unwrap(),
        v["reuse_key_hex"].as_str().unwrap(),
    );
    let text_key: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    assert_eq!(
        k.reuse_entry(class, &text_key),
        v["reuse_entry"].as_str().unwrap()
    );
    assert_eq!(
        k.reuse_claim(class, &text_key),
        v["reuse_claim"].as_str().unwrap()
    );
    let counters: Vec<&str> = v["stats_counters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert_eq!(counters, embedfleet_core::constants::STATS_COUNTERS);
}
