"""Scenario 11: symlinks out of the data root. The input tree holds a link to
a Parquet file outside the root and a link to a directory outside it. The
manager's scan reports both as scan errors naming the link and plans no job
for them (exit status 1, for the scan errors); jobs for those paths enqueued
by hand anyway (a stale plan, a hand-made message) are refused by the
workers and dead-lettered, and nothing is read from or written outside. The
other jobs complete: the verdict is clean."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bus.messages import Job
from tests.fault.dataset import Corpus, fingerprint
from tests.fault.harness import Fleet
from tests.fault.kinds import WorkerKind
from tests.fault.manager_proc import copy_corpus, planned_jobs, start_manager, wait_enqueued, wait_exit
from tests.fault.runs import References, new_run
from tests.fault.scenarios import KINDS, assert_clean
from tests.support.procs import ProcessGroup
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.fault


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.label)
def test_symlinks_out_of_the_root_are_reported_refused_and_lose_nothing(
    server: RedisServer, procs: ProcessGroup, references: References, corpus: Corpus, kind: WorkerKind,
    tmp_path: Path,
) -> None:  # fmt: skip
    reference = references.get(kind)
    mine = copy_corpus(corpus, tmp_path / "input", 40)
    run = new_run(server, procs, kind, mine, tmp_path / "out")
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    shutil.copy2(corpus.root / corpus.files[-1], outside / "secret.parquet")
    shutil.copy2(corpus.root / corpus.files[-2], outside / "dir" / "part-00000.parquet")
    sub = Path(mine.files[0]).parent
    link_file = f"{sub.as_posix()}/zz-link.parquet"
    (mine.root / link_file).symlink_to(outside / "secret.parquet")
    (mine.root / "chains/2024-01/linked").symlink_to(outside / "dir")
    link_dir_file = "chains/2024-01/linked/part-00000.parquet"
    jobs = planned_jobs(mine, kind.model_id())
    run.enqueued.extend(jobs)
    manager = start_manager(run, mine.root, tmp_path / "run")
    wait_enqueued(run, jobs, manager)
    hostile = [
        Job.create(link_file, fingerprint(outside / "secret.parquet"), kind.model_id(), id_column="id"),
        Job.create(link_dir_file, fingerprint(outside / "dir" / "part-00000.parquet"), kind.model_id(),
                   id_column="id"),
    ]  # fmt: skip
    assert run.enqueue(hostile) == 2
    before_outside = sorted(p.name for p in outside.rglob("*"))
    fleet = Fleet(run, size=2)
    fleet.start()
    res = fleet.supervise(timeout_s=180)
    assert res.finished, f"run did not finish: {res}\n{run.procs.logs()}"
    rc = wait_exit(manager, 60)
    assert rc == 1, f"scan errors make the exit status 1:\n{manager.log_tail()}"
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    reported = {e["path"]: e["reason"] for e in summary["scan_errors"]}
    assert set(reported) == {link_file, "chains/2024-01/linked"}, reported
    assert all("symlink leads out of the data root" in r for r in reported.values())
    assert summary["planned"] == len(jobs) and summary["done"] == len(jobs) and not summary["failed"]
    verdict = run.verdict(reference, expected_dead=[j.id for j in hostile])
    reasons = [d.get("reason", "") for d in verdict.snapshot.dead]
    assert len(reasons) == 2 and all("outside its root" in r for r in reasons), reasons
    assert sorted(p.name for p in outside.rglob("*")) == before_outside, "nothing written outside the root"
    assert_clean(verdict, run, scan_errors=len(reported), refused=len(reasons))
