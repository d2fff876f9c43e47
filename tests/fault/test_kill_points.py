"""Scenario 1: workers SIGKILLed at chosen points, again and again, during a run
of at least 200 jobs. Each worker process is given one kill point (after the
temporary write, after the rename, before the acknowledgement), in rotation,
and kills itself the Nth time it reaches it; the fleet restarts it."""

from __future__ import annotations

import pytest

from tests.fault.dataset import Corpus, jobs_for
from tests.fault.harness import FAULT_EVERY, FAULT_POINT, Fleet
from tests.fault.kinds import WorkerKind
from tests.fault.runs import References, RunFactory
from tests.fault.scenarios import KINDS, MODEL_KINDS, assert_clean

pytestmark = pytest.mark.fault

POINTS = ("after_tmp_write", "after_rename", "before_ack")


def kill_run(
    make_run: RunFactory,
    references: References,
    corpus: Corpus,
    kind: WorkerKind,
    *,
    size: int,
    every: int,
    per_point: int,
) -> None:
    reference = references.get(kind)
    run = make_run(kind, lease_ms=1500)
    jobs = jobs_for(corpus, corpus.files, kind.model_id())
    assert len(jobs) >= 200
    run.enqueue(jobs)
    fleet = Fleet(run, size=size, env_for=lambda n: {FAULT_POINT: POINTS[n % 3], FAULT_EVERY: str(every)})
    fleet.start()
    res = fleet.supervise(timeout_s=240)
    assert res.finished, f"run did not finish: {res}\n{run.procs.logs()}"
    assert all(res.killed_at[p] >= per_point for p in POINTS), f"every point killed repeatedly: {res.killed_at}"
    assert_clean(run.verdict(reference), run, restarts=res.restarts, killed_at=dict(res.killed_at))


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.label)
def test_kill9_at_every_write_point_loses_nothing_and_counts_nothing_twice(
    make_run: RunFactory, references: References, corpus: Corpus, kind: WorkerKind
) -> None:
    kill_run(make_run, references, corpus, kind, size=2, every=10, per_point=3)


@pytest.mark.slow
@pytest.mark.parametrize("kind", MODEL_KINDS, ids=lambda k: k.label)  # the Rust worker runs the model above
def test_kill9_with_the_real_model_matches_a_fault_free_run(
    make_run: RunFactory, references: References, corpus: Corpus, kind: WorkerKind
) -> None:
    # Three workers, one kill point each, each dying at its 40th: every point
    # kills at least once while the model is loaded as few times as possible.
    kill_run(make_run, references, corpus, kind, size=3, every=40, per_point=1)
