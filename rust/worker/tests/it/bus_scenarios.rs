//! The bus scenarios of `tests/vectors/scenarios.json` run by the Rust bus
//! against a real Redis, step for step as `tests/test_bus_vectors.py` runs
//! them with the Python bus.

use super::common;

use std::collections::HashMap;
use std::time::Duration;

use embedfleet_core::Job;
use embedfleet_worker::bus::{Delivery, RedisBus};
use serde_json::Value;

fn jobs(table: &Value) -> HashMap<String, Job> {
    let cases = common::vectors("jobs.json");
    table
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, i)| {
            (
                name.clone(),
                Job::from_json(
                    cases[i.as_u64().unwrap() as usize]["json"]
                        .as_str()
                        .unwrap(),
                )
                .unwrap(),
            )
        })
        .collect()
}

fn stat(bus: &mut RedisBus, key: &str) -> i64 {
    bus.stats()
        .unwrap()
        .into_iter()
        .find(|(k, _)| k == key)
        .map_or(0, |(_, v)| v)
}

struct Run {
    bus: RedisBus,
    jobs: HashMap<String, Job>,
    lanes: Vec<String>,
    last: HashMap<String, Delivery>,
}

impl Run {
    fn claim(&mut self, step: &Value) {
        let got = self
            .bus
            .claim(step["consumer"].as_str().unwrap(), &self.lanes, 10)
            .unwrap();
        let Some(name) = step["expect"].as_str() else {
            assert!(got.is_none(), "{step}: got {got:?}");
            return;
        };
        let d = got.unwrap_or_else(|| panic!("{step}: nothing claimed"));
        assert_eq!(d.job.id, self.jobs[name].id, "{step}");
        assert_eq!(d.deliveries, step["deliveries"].as_u64().unwrap(), "{step}");
        if let Some(a) = step.get("attempt") {
            assert_eq!(u64::from(d.job.attempt), a.as_u64().unwrap(), "{step}");
        }
        self.last.insert(name.to_string(), d);
    }

    fn step(&mut self, step: &Value) {
        let op = step["op"].as_str().unwrap();
        let consumer = step["consumer"].as_str().unwrap_or_default();
        let expect = &step["expect"];
        let d = step["job"].as_str().and_then(|j| self.last.get(j)).cloned();
        match op {
            "enqueue" => {
                let got = self
                    .bus
                    .enqueue(&self.jobs[step["job"].as_str().unwrap()])
                    .unwrap();
                assert_eq!(i64::from(got), expect.as_i64().unwrap(), "{step}");
            }
            "raw_add" => {
                let j = &self.jobs[step["job"].as_str().unwrap()];
                let key = self.bus.keys().queue(&j.lane);
                let _: String = self
                    .bus
                    .query(
                        redis::cmd("XADD")
                            .arg(key)
                            .arg("*")
                            .arg("job")
                            .arg(j.to_json()),
                    )
                    .unwrap();
            }
            "claim" => self.claim(step),
            "renew" => assert_eq!(
                i64::from(self.bus.renew(consumer, &d.unwrap()).unwrap()),
                expect.as_i64().unwrap(),
                "{step}"
            ),
            "complete" => {
                let rows = step["rows"].as_u64().unwrap();
                let got = self
                    .bus
                    .complete(consumer, &d.unwrap(), rows, false)
                    .unwrap();
                assert_eq!(got as i64, expect.as_i64().unwrap(), "{step}");
            }
            "retry" => {
                let (reason, delay) = (
                    step["reason"].as_str().unwrap(),
                    step["delay_ms"].as_u64().unwrap(),
                );
                assert_eq!(
                    self.bus
                        .retry(consumer, &d.unwrap(), reason, delay)
                        .unwrap() as i64,
                    expect.as_i64().unwrap()
                );
            }
            "dead" => {
                let got = self
                    .bus
                    .dead_letter(
                        consumer,
                        &d.unwrap(),
                        step["reason"].as_str().unwrap(),
                        consumer,
                    )
                    .unwrap();
                assert_eq!(got as i64, expect.as_i64().unwrap(), "{step}");
            }
            "sleep" => std::thread::sleep(Duration::from_millis(step["ms"].as_u64().unwrap())),
            "stats" => {
                for (key, want) in expect.as_object().unwrap() {
                    assert_eq!(
                        stat(&mut self.bus, key),
                        want.as_i64().unwrap(),
                        "{key} in {step}"
                    );
                }
            }
            "state" => {
                let id = &self.jobs[step["job"].as_str().unwrap()].id;
                let got: String = self
                    .bus
                    .query(redis::cmd("HGET").arg(self.bus.keys().state()).arg(id))
                    .unwrap();
                assert_eq!(got, expect.as_str().unwrap());
            }
            "dead_reason" => {
                let id = self.jobs[step["job"].as_str().unwrap()].id.clone();
                let entries: Vec<(String, HashMap<String, String>)> = self
                    .bus
                    .query(
                        redis::cmd("XRANGE")
                            .arg(self.bus.keys().dead())
                            .arg("-")
                            .arg("+"),
                    )
                    .unwrap();
                let reasons: Vec<&str> = entries
                    .iter()
                    .filter(|(_, f)| {
                        Job::from_json(&f["job"])
                            .map(|j| j.id == id)
                            .unwrap_or(false)
                    })
                    .map(|(_, f)| f["reason"].as_str())
                    .collect();
                assert_eq!(reasons, vec![expect.as_str().unwrap()]);
            }
            "trim" => {
                let lanes = self.lanes.clone();
                let removed: i64 = lanes.iter().map(|l| self.bus.trim(l).unwrap()).sum();
                assert_eq!(removed, expect.as_i64().unwrap(), "{step}");
            }
            "stream_len" => {
                let lanes = self.lanes.clone();
                let n: i64 = lanes
                    .iter()
                    .map(|l| {
                        self.bus
                            .query::<i64>(redis::cmd("XLEN").arg(self.bus.keys().queue(l)))
                            .unwrap()
                    })
                    .sum();
                assert_eq!(n, expect.as_i64().unwrap());
            }
            other => panic!("unknown op {other}"),
        }
    }
}

#[test]
fn bus_scenarios_against_real_redis() {
    for scenario in common::vectors("scenarios.json").as_array().unwrap() {
        let jobs = jobs(&scenario["jobs"]);
        let mut lanes: Vec<String> = jobs.values().map(|j| j.lane.clone()).collect();
        lanes.sort();
        lanes.dedup();
        let mut bus = common::bus("scenario", scenario["lease_ms"].as_u64().unwrap());
        bus.ensure_lanes(&lanes).unwrap();
        let mut run = Run {
            bus,
            jobs,
            lanes,
            last: HashMap::new(),
        };
        for step in scenario["steps"].as_array().unwrap() {
            run.step(step);
        }
    }
}

#[test]
fn an_unreadable_message_is_dead_lettered_not_lost() {
    let mut bus = common::bus("unreadable", 60_000);
    let lanes = vec!["default".to_string()];
    bus.ensure_lanes(&lanes).unwrap();
    let key = bus.keys().queue("default");
    let _: String = bus
        .query(
            redis::cmd("XADD")
                .arg(&key)
                .arg("*")
                .arg("job")
                .arg("{broken"),
        )
        .unwrap();
    let err = bus.claim("w1", &lanes, 10).unwrap_err();
    assert!(err.to_string().contains("not JSON"), "{err}");
    let dead: Vec<(String, HashMap<String, String>)> = bus
        .query(
            redis::cmd("XRANGE")
                .arg(bus.keys().dead())
                .arg("-")
                .arg("+"),
        )
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].1["reason"].contains("not JSON"));
    assert!(bus.claim("w1", &lanes, 10).unwrap().is_none());
}

#[test]
fn lanes_are_served_in_priority_order() {
    let mut bus = common::bus("lanes", 60_000);
    let lanes = vec!["gpu".to_string(), "default".to_string()];
    bus.ensure_lanes(&lanes).unwrap();
    let make =
        |path: &str, lane: &str| Job::create(path, "1-1", "m", None, "text", None, lane).unwrap();
    bus.enqueue(&make("chains/a/x/1.parquet", "default"))
        .unwrap();
    bus.enqueue(&make("chains/a/x/2.parquet", "gpu")).unwrap();
    let first = bus.claim("w", &lanes, 10).unwrap().unwrap();
    let second = bus.claim("w", &lanes, 10).unwrap().unwrap();
    assert_eq!(
        (first.lane.as_str(), second.lane.as_str()),
        ("gpu", "default")
    );
    assert_eq!(
        bus.backlog(&lanes).unwrap(),
        2,
        "both are pending until completed"
    );
    bus.complete("w", &first, 1, false).unwrap();
    bus.complete("w", &second, 1, false).unwrap();
    assert_eq!(bus.backlog(&lanes).unwrap(), 0);
}

#[test]
fn backlog_counts_undelivered_pending_and_delayed_jobs_in_one_read() {
    let mut bus = common::bus("backlog", 60_000);
    let lanes = vec!["default".to_string(), "gpu".to_string()];
    bus.ensure_lanes(&lanes).unwrap();
    assert_eq!(bus.backlog(&lanes).unwrap(), 0);
    assert_eq!(bus.backlog(&[]).unwrap(), 0);
    for i in 0..3 {
        let path = format!("chains/a/x/{i}.parquet");
        let job = Job::create(&path, "1-1", "m", None, "text", None, "default").unwrap();
        bus.enqueue(&job).unwrap();
    }
    let held = bus.claim("w", &lanes, 10).unwrap().unwrap();
    let retried = bus.claim("w", &lanes, 10).unwrap().unwrap();
    bus.retry("w", &retried, "boom", 60_000).unwrap();
    // One undelivered, one in flight, one waiting out its backoff.
    assert_eq!(bus.backlog(&lanes).unwrap(), 3);
    assert_eq!(bus.backlog(&["gpu".to_string()]).unwrap(), 0);
    bus.complete("w", &held, 1, false).unwrap();
    assert_eq!(bus.backlog(&lanes).unwrap(), 2);
}
