"""Scenario 9: the output disk fills up in the middle of a run, stays full
for a while, then is freed. Output root and the manager's run dir are on a
small tmpfs mounted in a private mount namespace (``unshare --mount``) that
the manager and the workers run in (``nsenter``); the harness fills it to
the last byte, and keeps it full, from outside (``/proc/<pid>/root``).

The workers' writes fail and are retried with backoff; the manager reports
the outage once, waits it out, and takes the journal up where it stopped.
Nobody dies; once space is freed the run ends ``done`` with exit status 0,
the verdict is clean, and the journal is whole and complete (every
completion journaled exactly once, checked against the bus)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from manager.state import read_state
from tests.fault.checker import check_queue
from tests.fault.dataset import Corpus
from tests.fault.harness import Verdict, run_to_quiet
from tests.fault.kinds import WorkerKind
from tests.fault.manager_proc import (
    MountNamespace,
    copy_corpus,
    journal_verdict,
    planned_jobs,
    require_mount_namespaces,
    start_manager,
    wait_enqueued,
    wait_exit,
)
from tests.fault.outputs import check_outputs
from tests.fault.runs import References, new_run
from tests.fault.scenarios import KINDS, assert_clean
from tests.support.procs import ProcessGroup, wait_until
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.fault

FULL_FOR_S = 8.0


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.label)
def test_an_output_disk_full_for_a_while_then_freed_loses_nothing(
    server: RedisServer, procs: ProcessGroup, references: References, corpus: Corpus, kind: WorkerKind,
    tmp_path: Path,
) -> None:  # fmt: skip
    why = require_mount_namespaces()
    if why:
        pytest.skip(why)
    reference = references.get(kind)
    disk = MountNamespace(tmp_path / "disk", "24m", procs).start()
    out, run_dir = disk.mountpoint / "out", disk.mountpoint / "run"
    mine = copy_corpus(corpus, tmp_path / "input", 60)
    run = new_run(server, procs, kind, mine, out, lease_ms=2000, max_deliveries=10)
    jobs = planned_jobs(mine, kind.model_id())
    run.enqueued.extend(jobs)
    manager = start_manager(run, mine.root, run_dir, prefix=disk.prefix)
    wait_enqueued(run, jobs, manager)
    workers = [run.start_worker(f"d{i}-", prefix=disk.prefix) for i in range(2)]
    assert wait_until(lambda: run.done_count() >= 10, 120), f"no progress\n{procs.logs()}"
    done_at_full = run.done_count()
    filled = disk.fill("ballast-0")
    deadline, n = time.monotonic() + FULL_FOR_S, 1
    while time.monotonic() < deadline:  # keep it full: a worker that gives up its temporary frees a few bytes
        time.sleep(0.5)
        disk.fill(f"ballast-{n}")
        n += 1
    done_while_full = run.done_count() - done_at_full
    survived = manager.alive() and all(w.alive() or w.returncode() == 0 for w in workers)
    retried = int(run.snapshot().stats.get("retried", 0))
    for i in range(n):
        disk.free(f"ballast-{i}")
    assert survived, f"a process died of the full disk:\n{procs.logs()}"
    assert "cannot write" in manager.log_tail(20000), manager.log_tail()
    # A burst worker may leave while every job waits out its backoff; start new ones as a supervisor would.
    deadline = time.monotonic() + 240
    while not run_to_quiet(run, workers, 5) and time.monotonic() < deadline:
        assert all(w.alive() or w.returncode() == 0 for w in workers), procs.logs()
        if not any(w.alive() for w in workers):
            workers = [run.start_worker(f"d{i}-", prefix=disk.prefix) for i in range(2)]
    assert run.quiet(), f"run did not finish after the disk was freed\n{procs.logs()}"
    rc = wait_exit(manager, 60)
    assert rc == 0, manager.log_tail()
    state = read_state(disk.path(run_dir))
    assert state["final"] and state["stage"] == "done", state
    journal = (disk.path(run_dir) / "events.jsonl").read_text()
    assert '"type":"disk_recovered"' in journal
    whole, problems, complete = journal_verdict(run, disk.path(run_dir))
    assert whole, problems[:10]
    snap = run.snapshot()
    verdict = Verdict(
        check_queue([j.id for j in jobs], snap),
        check_outputs(disk.path(out), {j.out for j in jobs}, reference, kind.tolerance),
        snap,
    )
    assert_clean(verdict, run, ballast_bytes=filled, full_for_s=FULL_FOR_S, done_while_full=done_while_full,
                 retries=retried, journal_whole=whole, journal_done=complete["done"])  # fmt: skip
