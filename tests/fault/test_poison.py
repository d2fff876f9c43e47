"""Scenario 6: a poison job that crashes (SIGKILLs) its worker every time it
is picked up. After ``--max-deliveries`` deliveries the next worker to claim
it dead-letters it, with the reason and the attempts, while every other job
completes."""

from __future__ import annotations

import pytest

from tests.fault.dataset import POISON_DIR, Corpus, jobs_for
from tests.fault.harness import FAULT_CRASH_PATH, Fleet
from tests.fault.kinds import WorkerKind
from tests.fault.runs import References, RunFactory
from tests.fault.scenarios import KINDS, assert_clean

pytestmark = pytest.mark.fault

MAX_DELIVERIES = 3


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.label)
def test_a_poison_job_is_dead_lettered_after_n_deliveries_and_the_rest_completes(
    make_run: RunFactory, references: References, corpus: Corpus, kind: WorkerKind
) -> None:
    reference = references.get(kind)
    run = make_run(kind, lease_ms=1200, max_deliveries=MAX_DELIVERIES)
    (poison,) = jobs_for(corpus, [corpus.poison], kind.model_id())
    run.enqueue([poison])
    run.enqueue(jobs_for(corpus, corpus.files[100:140], kind.model_id()))
    fleet = Fleet(run, size=2, env_for=lambda _n: {FAULT_CRASH_PATH: f"/{POISON_DIR}/"}, max_restarts=20)
    fleet.start()
    res = fleet.supervise(timeout_s=120)
    assert res.finished, f"run did not finish: {res}\n{run.procs.logs()}"
    assert res.restarts == MAX_DELIVERIES, f"the poison job crashed a worker {res.restarts} times"
    verdict = run.verdict(reference, expected_dead=[poison.id])
    (letter,) = verdict.snapshot.dead
    assert int(letter["attempts"]) == MAX_DELIVERIES + 1, letter
    assert letter["reason"], letter
    assert_clean(verdict, run, crashes=res.restarts, dead_reason=letter["reason"])
