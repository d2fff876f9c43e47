"""Scenario 4: a worker in its own network namespace, joined to the host by a
veth pair on a private /30, with Redis bound to the host end only.
(a) The link is cut (iptables DROP both ways) while the worker holds a job,
for longer than its lease: a worker on the host takes the job over and
completes it; when the link heals the cut-off worker must not count it.
(b) The link is made slow and lossy, then healed: the run completes clean."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fault.checker import COUNTED_EVENTS
from tests.fault.dataset import Corpus, jobs_for
from tests.fault.harness import Run, run_to_quiet
from tests.fault.kinds import WorkerKind
from tests.fault.netns import NetNS, available
from tests.fault.runs import References, new_run
from tests.fault.scenarios import KINDS, assert_clean
from tests.support.procs import Managed, ProcessGroup, free_port, wait_until
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.fault

LEASE_MS = 1500


@pytest.fixture
def netns() -> Iterator[NetNS]:
    why = available()
    if why is not None:
        pytest.skip(f"scenario 4 skipped: {why}")
    ns = NetNS.create("f")
    try:
        yield ns
    finally:
        ns.close()


@pytest.fixture
def veth_run(netns: NetNS, procs: ProcessGroup, corpus: Corpus, tmp_path: Path) -> Iterator[tuple[NetNS, Run]]:
    srv = RedisServer(tmp_path / "redis-veth", free_port(), procs, bind=netns.host_ip)
    srv.start()
    yield netns, new_run(srv, procs, WorkerKind("mini"), corpus, tmp_path / "out", lease_ms=LEASE_MS)


def cut_while_owning(run: Run, ns: NetNS, worker: Managed, timeout_s: float) -> str:
    """Cut the link at a moment ``worker`` holds a job; return that job's id."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and worker.alive():
        if run.owned_by(worker.name):
            ns.cut()
            owned = run.owned_by(worker.name)
            if owned:
                return run.job_of_entry(owned[0]).id
            ns.heal()
        time.sleep(0.01)
    raise AssertionError(f"never caught {worker.name} holding a job\n{worker.log_tail()}")


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.label)
def test_a_worker_cut_off_past_its_lease_does_not_count_the_job_taken_over(
    veth_run: tuple[NetNS, Run], references: References, corpus: Corpus, kind: WorkerKind
) -> None:
    ns, run = veth_run
    run.kind = kind
    reference = references.get(kind)
    run.enqueue(jobs_for(corpus, corpus.files[:60], kind.model_id()))
    inner = run.start_worker("netns", prefix=ns.prefix)
    job = cut_while_owning(run, ns, inner, timeout_s=60)
    cut_at = time.monotonic()
    outer = run.start_worker("host")
    assert wait_until(lambda: run.state_of(job) == "d", 60), f"job never taken over\n{run.procs.logs()}"
    time.sleep(max(0.0, 2 * LEASE_MS / 1000 - (time.monotonic() - cut_at)))
    ns.heal()
    assert run_to_quiet(run, [inner, outer], 120), f"run did not finish\n{run.procs.logs()}"
    verdict = run.verdict(reference)
    by_inner = [e for e in verdict.snapshot.events if e.get("worker") == inner.name and e.get("job") == job]
    assert not [e for e in by_inner if e.get("type") in ("job_done", "job_skipped")], by_inner
    done_by = [e.get("worker") for e in verdict.snapshot.events if e.get("job") == job and e["type"] in COUNTED_EVENTS]
    assert done_by == [outer.name], f"the host worker should have completed the job: {done_by}"
    assert_clean(verdict, run, cut_s=round(time.monotonic() - cut_at, 1))


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.label)
def test_a_slow_lossy_link_then_healed_loses_nothing(
    veth_run: tuple[NetNS, Run], references: References, corpus: Corpus, kind: WorkerKind
) -> None:
    ns, run = veth_run
    run.kind = kind
    reference = references.get(kind)
    jobs = jobs_for(corpus, corpus.files[60:100], kind.model_id())
    run.enqueue(jobs)
    how = ns.degrade(delay_ms=50, loss_pct=5.0)
    workers = [run.start_worker("lossy", prefix=ns.prefix) for _ in range(2)]
    half = len(jobs) // 2
    wait_until(lambda: sum(run.state_of(j.id) == "d" for j in jobs) >= half, 45, every_s=0.5)
    done_while_degraded = sum(run.state_of(j.id) == "d" for j in jobs)
    ns.heal()
    assert done_while_degraded > 0, f"nothing got through the degraded link ({how})\n{run.procs.logs()}"
    assert run_to_quiet(run, workers, 120), f"run did not finish\n{run.procs.logs()}"
    assert_clean(run.verdict(reference), run, link=how, done_while_degraded=done_while_degraded)
