"""Scenario 8: busy workers SIGKILLed again and again (at the moment their
temporary output exists, and at random moments while they hold a job); the
fleet restarts them under new ids. Whoever takes a killed worker's job over
removes that job's temporaries, and a worker started again under its old id
removes its own: after the run, not one temporary file is left in the output
tree, and the verdict is clean."""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest

from tests.fault.dataset import Corpus, jobs_for
from tests.fault.harness import FAULT_EVERY, FAULT_POINT, Fleet
from tests.fault.kinds import WorkerKind
from tests.fault.outputs import list_tree
from tests.fault.runs import References, RunFactory
from tests.fault.scenarios import KINDS, assert_clean

pytestmark = pytest.mark.fault

PLANTED = "planted"
"""Worker id tag of a worker 'killed in an earlier life' (a temporary planted by hand)."""


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.label)
def test_busy_workers_killed_leave_no_temporary_file_after_the_run(
    make_run: RunFactory, references: References, corpus: Corpus, kind: WorkerKind
) -> None:
    reference = references.get(kind)
    run = make_run(kind, lease_ms=1500, max_deliveries=12)
    jobs = jobs_for(corpus, corpus.files, kind.model_id())
    run.enqueue(jobs)
    # An earlier life of a worker id left a temporary: that worker removes it when it starts.
    planted_id = f"{kind.name}-{PLANTED}"
    stale_dir = run.cfg.output_root / "embeddings" / "2099-01" / "gone"
    stale_dir.mkdir(parents=True)
    (stale_dir / f".x.parquet.{planted_id}.0123abcd.89abcdef.tmp").write_bytes(b"PAR1 half written")
    # Every member kills itself at its 5th temporary written; the harness kills busy ones too.
    fleet = Fleet(run, size=2, env_for=lambda _n: {FAULT_POINT: "after_tmp_write", FAULT_EVERY: "5"})
    fleet.start()
    # On a lane of its own (empty): it starts, sweeps its stale temporaries and leaves.
    planted = run.procs.start(planted_id, [*kind.argv(run.cfg, planted_id), "--lanes", "empty"], env=kind.env())
    rng = random.Random(21)
    killed, restarts, killed_at = 0, 0, Counter[str]()
    deadline = time.monotonic() + 120
    while killed < 8 and time.monotonic() < deadline and not run.quiet():
        for member, _env in list(fleet.members):
            if member.alive() and run.owned_by(member.name) and rng.random() < 0.5:
                time.sleep(rng.uniform(0.0, 0.2))
                member.kill9()
                killed += 1
        step = fleet.supervise(timeout_s=0.3, until=lambda: False)  # restart what died
        restarts, killed_at = restarts + step.restarts, killed_at + step.killed_at
    res = fleet.supervise(timeout_s=240)
    assert res.finished, f"run did not finish: {res}\n{run.procs.logs()}"
    restarts, killed_at = restarts + res.restarts, killed_at + res.killed_at
    assert planted.wait(60) == 0, planted.log_tail()
    assert not any(stale_dir.iterdir()), "the worker removed its own stale temporary when it started"
    _visible, hidden = list_tree(run.cfg.output_root)
    verdict = run.verdict(reference)
    assert_clean(verdict, run, harness_kills=killed, restarts=restarts, killed_at=dict(killed_at))
    assert restarts >= 6, f"too few kills to tell: {killed} by the harness, {restarts} restarts"
    assert verdict.outputs.stale_temps == [], f"temporaries left: {verdict.outputs.stale_temps}"
    assert hidden == set(), hidden
