"""Scenario 5: duplicates injected. (a) The same jobs enqueued twice through
the bus (a no-op) and, bypassing the enqueue script, the same job messages
added to the stream a second time (as a racing second manager would): each
job is still counted once. (b) A job a worker is running is claimed by a
second worker (``XCLAIM`` with no idle time): the first is refused when it
renews or completes; the job is completed once, by whichever worker claims
it after its new lease runs out."""

from __future__ import annotations

import time

import pytest
import redis

from bus import constants as c
from tests.fault.dataset import Corpus, jobs_for
from tests.fault.harness import Run, run_to_quiet
from tests.fault.kinds import WorkerKind
from tests.fault.runs import References, RunFactory
from tests.fault.scenarios import KINDS, assert_clean
from tests.support.procs import Managed

pytestmark = pytest.mark.fault


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.label)
def test_jobs_enqueued_twice_and_duplicate_entries_are_counted_once(
    make_run: RunFactory, references: References, corpus: Corpus, kind: WorkerKind
) -> None:
    reference = references.get(kind)
    run = make_run(kind, lease_ms=2000)
    jobs = jobs_for(corpus, corpus.files[:40], kind.model_id())
    assert run.enqueue(jobs) == len(jobs)
    assert run.enqueue(jobs) == 0, "a second enqueue of the same jobs must be a no-op"
    client = run.client()
    for job in jobs[::4]:
        client.xadd(run.keys.queue(job.lane), {c.JOB_FIELD: job.to_json()})
    client.close()
    injected = len(jobs[::4])
    workers = [run.start_worker("dup"), run.start_worker("dup")]
    assert run_to_quiet(run, workers, 90), f"run did not finish\n{run.procs.logs()}"
    verdict = run.verdict(reference)
    assert verdict.snapshot.stats.get("duplicates", 0) == injected, verdict.snapshot.stats
    assert_clean(verdict, run, injected_entries=injected)


def steal_running_job(run: Run, victim: Managed, thief: str, timeout_s: float) -> str:
    """``XCLAIM`` (idle 0) into ``thief``'s name an entry ``victim`` holds now."""
    client = run.client()
    q = run.keys.queue(c.DEFAULT_LANE)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and victim.alive():
            for entry in run.owned_by(victim.name):
                try:
                    taken = client.xclaim(q, c.GROUP, thief, 0, [entry], justid=True)
                except redis.exceptions.ResponseError:
                    taken = []
                if taken:
                    return entry
            time.sleep(0.005)
    finally:
        client.close()
    raise AssertionError(f"never caught {victim.name} holding a job\n{victim.log_tail()}")


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.label)
def test_a_running_job_claimed_by_a_second_worker_is_counted_once(
    make_run: RunFactory, references: References, corpus: Corpus, kind: WorkerKind
) -> None:
    reference = references.get(kind)
    run = make_run(kind, lease_ms=1500)
    jobs = jobs_for(corpus, corpus.files[40:100], kind.model_id())
    run.enqueue(jobs)
    first = run.start_worker("first")
    second = run.start_worker("second")
    stolen = [steal_running_job(run, first, second.name, 60) for _ in range(3)]
    stolen_jobs = {run.job_of_entry(e).id for e in stolen}
    assert run_to_quiet(run, [first, second], 90), f"run did not finish\n{run.procs.logs()}"
    verdict = run.verdict(reference)
    refusals = {e.get("job") for e in verdict.snapshot.events
                if e.get("worker") == first.name and e.get("type") == "lease_lost"}  # fmt: skip
    refused = stolen_jobs <= refusals or verdict.snapshot.stats.get("lost_lease", 0) >= len(stolen_jobs)
    assert refused, f"the robbed worker was not refused: {refusals} {verdict.snapshot.stats}"
    assert_clean(verdict, run, stolen=len(stolen))
