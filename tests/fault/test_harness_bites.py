"""The harness must catch a broken worker, not only bless a good one: the
mini worker with a bug planted on purpose (``EMBEDFLEET_MINI_BUG``) runs two
of the scenarios, and the checker has to report the damage."""

from __future__ import annotations

import time

import pytest

from tests.fault.dataset import Corpus, jobs_for
from tests.fault.harness import FAULT_EVERY, FAULT_POINT, Fleet, run_to_quiet, stop_while_owning
from tests.fault.kinds import WorkerKind
from tests.fault.runs import References, RunFactory
from tests.support.procs import wait_until

pytestmark = pytest.mark.fault

MINI = WorkerKind("mini")


def test_acknowledging_before_writing_is_caught_as_lost_outputs(
    make_run: RunFactory, references: References, corpus: Corpus
) -> None:
    reference = references.get(MINI)
    run = make_run(MINI, lease_ms=1500)
    run.enqueue(jobs_for(corpus, corpus.files[:40], MINI.model_id()))
    env = {"EMBEDFLEET_MINI_BUG": "ack_before_write", FAULT_POINT: "after_tmp_write", FAULT_EVERY: "4"}
    fleet = Fleet(run, size=2, env_for=lambda _n: env)
    fleet.start()
    res = fleet.supervise(timeout_s=90)
    assert res.finished and res.restarts > 0, res
    verdict = run.verdict(reference)
    assert verdict.outputs.missing, f"the checker missed outputs lost to an early ack: {verdict.summary()}"
    assert not verdict.ok


def test_completing_without_the_ownership_check_is_caught_as_double_counting(
    make_run: RunFactory, references: References, corpus: Corpus
) -> None:
    reference = references.get(MINI)
    run = make_run(MINI, lease_ms=1000)
    run.enqueue(jobs_for(corpus, corpus.files[:30], MINI.model_id()))
    bug = {"EMBEDFLEET_MINI_BUG": "no_ownership"}
    late = run.start_worker("late", env=bug)
    _entry, job = stop_while_owning(run, late, timeout_s=60)
    time.sleep(2.0)
    other = run.start_worker("other", env=bug)
    assert wait_until(lambda: run.state_of(job.id) == "d", 60)
    late.cont()
    assert run_to_quiet(run, [late, other], 60), run.procs.logs()
    verdict = run.verdict(reference)
    assert verdict.queue.n_double_counted >= 1, f"the checker missed a double count: {verdict.summary()}"
    assert job.id in verdict.queue.double_counted and verdict.queue.counter_excess >= 1
    assert not verdict.ok
