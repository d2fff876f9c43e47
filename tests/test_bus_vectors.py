"""The Python bus against the shared protocol vectors (tests/vectors/)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from bus import constants as c
from bus.errors import EmbedfleetError, InvalidMessage, ProtocolError
from bus.keys import Keys
from bus.messages import Job, check_relative
from bus.redis_transport import RedisTransport
from bus.transport import Delivery
from tests.support.vectors import load
from tests.vectors.generate import hostile_raw


@pytest.mark.parametrize("case", load("jobs.json"), ids=lambda c: c["id"][:8])
def test_job_ids_outputs_and_wire_form_match_vectors(case: dict[str, Any]) -> None:
    inp = case["input"]
    job = Job.create(
        path=inp["path"],
        fingerprint=inp["fingerprint"],
        model=inp["model"],
        rows=tuple(inp["rows"]) if inp["rows"] else None,  # type: ignore[arg-type]
        column=inp.get("column", "text"),
        id_column=inp.get("id_column"),
        lane=inp.get("lane", "default"),
    )
    assert job.id == case["id"]
    assert job.out == case["out"]
    assert job.to_json() == case["json"]
    assert Job.from_json(case["json"]) == job
    assert Job.from_json(case["retry_json"]) == job.next_attempt()
    assert job.next_attempt().to_json() == case["retry_json"]
    assert Job.from_json(case["v1_json"]) == job


@pytest.mark.parametrize("case", load("paths.json"), ids=lambda c: repr(c["path"])[:30])
def test_path_safety_matches_vectors(case: dict[str, Any]) -> None:
    try:
        check_relative(case["path"])
        ok = True
    except EmbedfleetError:
        ok = False
    assert ok == case["ok"]


@pytest.mark.parametrize("case", load("bad_messages.json"), ids=lambda c: c["error_contains"])
def test_bad_messages_are_refused_with_a_reason(case: dict[str, Any]) -> None:
    with pytest.raises(EmbedfleetError) as e:
        Job.from_json(case["raw"])
    assert case["error_contains"] in str(e.value)


@pytest.mark.parametrize(
    "case", [c for c in load("hostile_messages.json") if "field" not in c], ids=lambda c: c["name"]
)
def test_hostile_messages_are_refused_with_their_stable_reason(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidMessage) as e:
        Job.from_json(hostile_raw(case))
    assert str(e.value).startswith(case["reason_starts_with"])


def test_keys_match_vectors() -> None:
    v = load("keys.json")
    k = Keys(v["namespace"])
    assert k.queue(v["lane"]) == v["queue"]
    assert k.delayed(v["lane"]) == v["delayed"]
    for name in (
        "state",
        "stats",
        "dead",
        "errors",
        "workers",
        "workers_seen",
        "control",
        "events",
        "lanes",
        "lock_reconcile",
        "reuse_bytes",
        "reuse_max",
    ):
        assert getattr(k, name) == v[name], name
    text_key = bytes.fromhex(v["reuse_key_hex"])
    assert k.reuse_entry(v["reuse_class"], text_key) == v["reuse_entry"]
    assert k.reuse_claim(v["reuse_class"], text_key) == v["reuse_claim"]
    assert list(c.STATS_COUNTERS) == v["stats_counters"]


def _jobs(table: dict[str, int]) -> dict[str, Job]:
    cases = load("jobs.json")
    return {name: Job.from_json(cases[i]["json"]) for name, i in table.items()}


@pytest.mark.parametrize("scenario", load("scenarios.json"), ids=lambda s: s["name"][:40])
def test_bus_scenarios_against_real_redis(scenario: dict[str, Any], redis_client: redis.Redis) -> None:
    t = RedisTransport(redis_client, namespace="eftest", lease_ms=scenario["lease_ms"], autoclaim_every_s=0)
    jobs = _jobs(scenario["jobs"])
    lanes = sorted({j.lane for j in jobs.values()})
    t.ensure_lanes(lanes)
    held: dict[tuple[str, str], Delivery] = {}
    last: dict[str, Delivery] = {}
    for step in scenario["steps"]:
        op = step["op"]
        if op == "enqueue":
            assert int(t.enqueue(jobs[step["job"]])) == step["expect"], step
        elif op == "raw_add":
            j = jobs[step["job"]]
            redis_client.xadd(t.keys.queue(j.lane), {"job": j.to_json()})
        elif op == "claim":
            d = t.claim(step["consumer"], lanes, block_ms=10)
            if step["expect"] is None:
                assert d is None, step
                continue
            assert d is not None and d.job.id == jobs[step["expect"]].id, step
            assert d.deliveries == step["deliveries"], step
            if "attempt" in step:
                assert d.job.attempt == step["attempt"], step
            held[(step["consumer"], step["expect"])] = d
            last[step["expect"]] = d
        else:
            d = last.get(step.get("job", ""))  # the latest delivery of the job, whoever holds it
            if op == "renew":
                assert int(t.renew(step["consumer"], d)) == step["expect"], step
            elif op == "complete":
                assert t.complete(step["consumer"], d, step["rows"]).value == step["expect"], step
            elif op == "retry":
                assert t.retry(step["consumer"], d, step["reason"], step["delay_ms"]).value == step["expect"], step
            elif op == "dead":
                assert t.dead_letter(step["consumer"], d, step["reason"], step["consumer"]).value == step["expect"]
            elif op == "sleep":
                time.sleep(step["ms"] / 1000)
            elif op == "stats":
                stats = t.stats()
                for key, want in step["expect"].items():
                    assert stats.get(key, 0) == want, (key, stats)
            elif op == "state":
                assert redis_client.hget(t.keys.state, jobs[step["job"]].id).decode() == step["expect"]
            elif op == "dead_reason":
                entries = redis_client.xrange(t.keys.dead)
                reasons = [
                    e[1][b"reason"].decode() for e in entries if Job.from_json(e[1][b"job"]).id == jobs[step["job"]].id
                ]
                assert reasons == [step["expect"]]
            elif op == "trim":
                removed = sum(t.trim(lane) for lane in lanes)
                assert removed == step["expect"], step
            elif op == "stream_len":
                assert sum(redis_client.xlen(t.keys.queue(lane)) for lane in lanes) == step["expect"]
            else:
                raise AssertionError(f"unknown op {op}")


def test_unreadable_message_is_dead_lettered_not_lost(transport: RedisTransport, redis_client: redis.Redis) -> None:
    transport.ensure_lanes(["default"])
    redis_client.xadd(transport.keys.queue("default"), {"job": "{broken"})
    with pytest.raises(ProtocolError):
        transport.claim("w1", ["default"], block_ms=10)
    dead = redis_client.xrange(transport.keys.dead)
    assert len(dead) == 1 and b"not JSON" in dead[0][1][b"reason"]
    assert transport.claim("w1", ["default"], block_ms=10) is None
