"""Scenario 2: a worker SIGSTOPped while it holds a job, for longer than its
lease, then SIGCONTed. Another worker takes the job over and completes it;
the late worker's renewal or completion must neither acknowledge nor count
the job the other worker now owns."""

from __future__ import annotations

import time

import pytest

from tests.fault.dataset import Corpus, jobs_for
from tests.fault.harness import run_to_quiet, stop_while_owning
from tests.fault.kinds import WorkerKind
from tests.fault.runs import References, RunFactory
from tests.fault.scenarios import KINDS, assert_clean
from tests.support.procs import wait_until

pytestmark = pytest.mark.fault

LEASE_MS = 1500


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.label)
def test_a_worker_resumed_after_its_lease_expired_counts_nothing(
    make_run: RunFactory, references: References, corpus: Corpus, kind: WorkerKind
) -> None:
    reference = references.get(kind)
    run = make_run(kind, lease_ms=LEASE_MS)
    run.enqueue(jobs_for(corpus, corpus.files[:60], kind.model_id()))
    late = run.start_worker("late")
    _entry, job = stop_while_owning(run, late, timeout_s=60)
    time.sleep(2 * LEASE_MS / 1000)
    other = run.start_worker("other")
    assert wait_until(lambda: run.state_of(job.id) == "d", 60), f"job never taken over\n{run.procs.logs()}"
    late.cont()
    assert run_to_quiet(run, [late, other], 90), f"run did not finish\n{run.procs.logs()}"
    verdict = run.verdict(reference)
    late_events = [e for e in verdict.snapshot.events if e.get("worker") == late.name and e.get("job") == job.id]
    refused = verdict.snapshot.stats.get("lost_lease", 0) >= 1 or any(e["type"] == "lease_lost" for e in late_events)
    assert refused, f"the late worker was never refused: {late_events} {verdict.snapshot.stats}\n{late.log_tail()}"
    assert not any(e["type"] in ("job_done", "job_skipped") for e in late_events), late_events
    assert_clean(verdict, run, stolen_job=job.id)
