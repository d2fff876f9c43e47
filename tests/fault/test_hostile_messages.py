"""Scenario 12: hostile job messages injected mid-run. Every message of the
shared vector file (``tests/vectors/hostile_messages.json``: not JSON, wrong
versions, missing and bad fields, unsafe and over-long paths, 64 KiB+) is
``XADD``ed to the lane by hand, twice: once between the real jobs before two
workers start, once while they run them.
Each is dead-lettered once with its reason; no worker dies or waits as if
Redis were away; and the real jobs' verdict is clean (the hostile entries,
which carry no job id, are taken out of the snapshot before the check)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from bus import constants as c
from tests.fault.checker import BusSnapshot, check_queue
from tests.fault.dataset import Corpus, jobs_for
from tests.fault.harness import Fleet, Verdict
from tests.fault.kinds import WorkerKind
from tests.fault.outputs import check_outputs
from tests.fault.runs import References, RunFactory
from tests.fault.scenarios import KINDS, assert_clean
from tests.support.procs import wait_until
from tests.vectors.generate import hostile_raw

pytestmark = pytest.mark.fault

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "hostile_messages.json"
INVALID = "invalid job message"


def without_hostile(snap: BusSnapshot) -> tuple[BusSnapshot, int]:
    """The snapshot without the hostile entries' traces; how many dead letters they left."""
    dead = [d for d in snap.dead if not d.get("reason", "").startswith(INVALID)]
    state = {k: v for k, v in snap.state.items() if not k.startswith("entry:")}
    n = len(snap.dead) - len(dead)
    stats = {**snap.stats, "dead": snap.stats.get("dead", 0) - n}
    return replace(snap, state=state, dead=dead, stats=stats), n


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.label)
def test_hostile_messages_mid_run_are_dead_lettered_and_lose_nothing(
    make_run: RunFactory, references: References, corpus: Corpus, kind: WorkerKind
) -> None:
    reference = references.get(kind)
    cases = json.loads(VECTORS.read_text())
    run = make_run(kind)
    jobs = jobs_for(corpus, corpus.files[:80], kind.model_id())
    client = run.client()
    injected: dict[str, dict[str, object]] = {}

    def inject() -> None:
        for case in cases:
            field = str(case.get("field", c.JOB_FIELD))
            entry = client.xadd(run.keys.queue(c.DEFAULT_LANE), {field: hostile_raw(case)})
            injected[entry.decode() if isinstance(entry, bytes) else str(entry)] = case

    # Round one sits between real jobs in the lane before the fleet starts, so
    # every worker meets hostile messages in the middle of its run whatever the
    # timing; round two is added while the fleet runs. A fast stand-in may have
    # drained the lane by then and exited (--burst): the fleet is started again,
    # as a supervisor would, and that is not counted as a restart.
    try:
        run.enqueue(jobs[:20])
        inject()
        run.enqueue(jobs[20:40])
        fleet = Fleet(run, size=2, respawn_idle=True)
        fleet.start()
        assert wait_until(lambda: run.done_count() >= 10, 120), f"no progress\n{run.procs.logs()}"
        inject()
        run.enqueue(jobs[40:80])
    finally:
        client.close()
    res = fleet.supervise(timeout_s=180)
    assert res.finished and res.restarts == 0, f"a worker died or the run stalled: {res}\n{run.procs.logs()}"
    snap = run.snapshot()
    client = run.client()
    try:
        for entry, case in injected.items():
            raw = client.hget(run.keys.errors, f"entry:{entry}")
            assert isinstance(raw, bytes), f"{case['name']}: not dead-lettered"
            reason = raw.decode("utf-8", "replace")
            assert reason.startswith(str(case["reason_starts_with"])), (case["name"], reason)
    finally:
        client.close()
    clean, n_hostile = without_hostile(snap)
    assert n_hostile == len(injected), f"{n_hostile} hostile dead letters for {len(injected)} injected"
    logs = run.procs.logs(100_000)
    assert "trying again in" not in logs, "a worker backed off as if Redis were away"
    verdict = Verdict(
        check_queue([j.id for j in run.enqueued], clean),
        check_outputs(run.cfg.output_root, {j.out for j in run.enqueued}, reference, kind.tolerance),
        snap,
    )
    assert_clean(verdict, run, hostile_injected=len(injected), hostile_dead_lettered=n_hostile)
