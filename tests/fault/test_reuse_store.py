"""Scenario 8: the reuse store (docs/reuse.md) killed or flushed mid-run.

The workers keep their reuse store on a second redis-server
(``EMBEDFLEET_REUSE_URL``), so it can fail while the bus stays up. Mid-run
that server is SIGKILLed (and started again, empty, a little later) or
flushed. The store can only save work: the run completes, nothing is lost
or counted twice, and every output equals the fault-free run's (within the
binary16 storage of a reused vector: cosine 0.99999)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fault.dataset import Corpus, jobs_for
from tests.fault.harness import Fleet
from tests.fault.kinds import WorkerKind
from tests.fault.runs import References, new_run
from tests.fault.scenarios import KINDS, assert_clean
from tests.support.procs import ProcessGroup, free_port, wait_until
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.fault


@pytest.mark.parametrize("fault", ["kill9", "flush"])
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.label)
def test_losing_the_reuse_store_mid_run_costs_recomputation_not_results(
    kind: WorkerKind, fault: str, procs: ProcessGroup, corpus: Corpus, references: References, tmp_path: Path
) -> None:
    reference = references.get(kind)
    bus = RedisServer(tmp_path / "bus", free_port(), procs)
    bus.start()
    store = RedisServer(tmp_path / "store", free_port(), procs, extra=("--appendonly", "no"))
    store.start()
    run = new_run(bus, procs, kind, corpus, tmp_path / "out", lease_ms=2000)
    run.enqueue(jobs_for(corpus, corpus.files, kind.model_id()))
    fleet = Fleet(run, size=2, env_for=lambda _i: {"EMBEDFLEET_REUSE_URL": store.url}, max_restarts=0)
    fleet.start()
    assert wait_until(lambda: run.done_count() >= 40, 120), f"no progress\n{procs.logs()}"
    entries_before = int(store.client().dbsize())
    if fault == "kill9":
        store.kill9()
        done_at_kill = run.done_count()
        wait_until(lambda: run.done_count() >= done_at_kill + 20, 60)
        store.start()
    else:
        store.client().flushall()
    res = fleet.supervise(timeout_s=240)
    assert res.finished, f"run did not finish: {res}\n{procs.logs()}"
    assert entries_before > 0, "the workers stored nothing before the fault"
    stats = run.snapshot().stats
    assert_clean(run.verdict(reference), run, fault=fault, store_entries_before=entries_before)
    assert stats.get("model_calls", 0) > 0
