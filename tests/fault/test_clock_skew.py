"""Scenario 7: a worker whose clock is two hours ahead (libfaketime). Leases,
backoffs and heartbeats are measured on Redis's clock, so the skew must have
no effect: no lease taken over, no retry, nothing lost or counted twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fault.dataset import Corpus, jobs_for
from tests.fault.harness import run_to_quiet
from tests.fault.kinds import WorkerKind
from tests.fault.runs import References, RunFactory
from tests.fault.scenarios import KINDS, assert_clean

pytestmark = pytest.mark.fault

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
SKEW_MS = 2 * 3600 * 1000


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.label)
def test_a_worker_two_hours_ahead_changes_nothing(
    make_run: RunFactory, references: References, corpus: Corpus, kind: WorkerKind
) -> None:
    if not LIBFAKETIME.exists():
        pytest.fail(f"{LIBFAKETIME} missing: install the Debian package faketime (deploy/setup.sh)")
    reference = references.get(kind)
    run = make_run(kind, lease_ms=1500)
    run.enqueue(jobs_for(corpus, corpus.files[140:200], kind.model_id()))
    skewed = run.start_worker("skewed", env={"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": "+2h"})
    normal = run.start_worker("normal")
    assert run_to_quiet(run, [skewed, normal], 90), f"run did not finish\n{run.procs.logs()}"
    verdict = run.verdict(reference)
    now_ms = int(run.client().time()[0]) * 1000
    skews = [int(e["ts_ms"]) - now_ms for e in verdict.snapshot.events if e.get("worker") == skewed.name]
    assert skews and all(abs(s - SKEW_MS) < 120_000 for s in skews), f"faketime did not take: skews {skews[:5]}"
    done_by = {e.get("worker") for e in verdict.snapshot.events if e.get("type") == "job_done"}
    assert skewed.name in done_by, "the skewed worker did no job"
    stats = verdict.snapshot.stats
    assert stats.get("lost_lease", 0) == 0 and stats.get("retried", 0) == 0, stats
    assert not [e for e in verdict.snapshot.events if e.get("type") == "lease_lost"]
    assert_clean(verdict, run, skew_ms=SKEW_MS)
