"""``bus/memory.py``, the in-memory fake of the bus, against the same
``tests/vectors/scenarios.json`` the Lua scripts run on a real Redis
(``tests/test_bus_vectors.py``), so the fake cannot drift from the scripts.

Two observations have no meaning for the fake and are skipped: ``trim`` and
``stream_len`` (the fake drops an acknowledged entry at once, which is where
trimming leads on Redis)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from bus.memory import MemoryTransport
from bus.messages import Job
from bus.transport import Delivery
from tests.support.vectors import load

SKIPPED = {"trim", "stream_len"}


def _jobs(table: dict[str, int]) -> dict[str, Job]:
    cases = load("jobs.json")
    return {name: Job.from_json(cases[i]["json"]) for name, i in table.items()}


def _observe(t: MemoryTransport, jobs: dict[str, Job], step: dict[str, Any]) -> None:
    op = step["op"]
    if op == "stats":
        for key, want in step["expect"].items():
            assert t.stats.get(key, 0) == want, (key, t.stats)
    elif op == "state":
        assert t.state.get(jobs[step["job"]].id) == step["expect"], step
    elif op == "dead_reason":
        reasons = [d["reason"] for d in t.dead if d["job"].id == jobs[step["job"]].id]
        assert reasons == [step["expect"]], step
    else:
        assert op in SKIPPED, f"unknown step {op}"


@pytest.mark.parametrize("scenario", load("scenarios.json"), ids=lambda s: s["name"][:40])
def test_memory_transport_follows_the_bus_scenarios(scenario: dict[str, Any]) -> None:
    t = MemoryTransport(lease_ms=scenario["lease_ms"])
    jobs = _jobs(scenario["jobs"])
    lanes = sorted({j.lane for j in jobs.values()})
    t.ensure_lanes(lanes)
    last: dict[str, Delivery] = {}
    for step in scenario["steps"]:
        op = step["op"]
        d = last.get(step.get("job", ""))
        if op == "enqueue":
            assert int(t.enqueue(jobs[step["job"]])) == step["expect"], step
        elif op == "raw_add":
            with t._lock:  # an entry no enqueue accounted for (a hand-made XADD)
                t._add(jobs[step["job"]])
        elif op == "claim":
            got = t.claim(step["consumer"], lanes, block_ms=10)
            if step["expect"] is None:
                assert got is None, step
                continue
            assert got is not None and got.job.id == jobs[step["expect"]].id, step
            assert got.deliveries == step["deliveries"], step
            if "attempt" in step:
                assert got.job.attempt == step["attempt"], step
            last[step["expect"]] = got
        elif op == "renew":
            assert d is not None and int(t.renew(step["consumer"], d)) == step["expect"], step
        elif op == "complete":
            assert d is not None and t.complete(step["consumer"], d, step["rows"]).value == step["expect"], step
        elif op == "retry":
            assert d is not None
            assert t.retry(step["consumer"], d, step["reason"], step["delay_ms"]).value == step["expect"], step
        elif op == "dead":
            assert d is not None
            assert t.dead_letter(step["consumer"], d, step["reason"], step["consumer"]).value == step["expect"], step
        elif op == "sleep":
            time.sleep(step["ms"] / 1000)
        else:
            _observe(t, jobs, step)
