"""Scenario 10: the manager SIGKILLed in the middle of a run and started
again with the same arguments while the workers go on. The new manager
resumes the same run (same run dir and journal): every completion, also
those made while no manager listened, is journaled exactly once (checked
against the bus by ``manager.completeness``), the chain is intact, the run
ends ``done`` and final, and the bus's verdict is clean."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from manager.state import read_state
from tests.fault.dataset import Corpus
from tests.fault.harness import Fleet, Run
from tests.fault.kinds import WorkerKind
from tests.fault.manager_proc import (
    copy_corpus,
    journal_verdict,
    planned_jobs,
    start_manager,
    wait_enqueued,
    wait_exit,
)
from tests.fault.runs import References, new_run
from tests.fault.scenarios import KINDS, assert_clean
from tests.support.procs import ProcessGroup, wait_until
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.fault


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.label)
def test_a_manager_killed_mid_run_resumes_and_its_journal_is_complete(
    server: RedisServer, procs: ProcessGroup, references: References, corpus: Corpus, kind: WorkerKind,
    tmp_path: Path,
) -> None:  # fmt: skip
    reference = references.get(kind)
    mine = copy_corpus(corpus, tmp_path / "input", 80)
    run = new_run(server, procs, kind, mine, tmp_path / "out", lease_ms=2000)
    jobs = planned_jobs(mine, kind.model_id())
    run.enqueued.extend(jobs)  # the manager enqueues them; the checker's history
    run_dir = tmp_path / "run"
    first = start_manager(run, mine.root, run_dir)
    wait_enqueued(run, jobs, first)
    fleet = Fleet(run, size=2)
    fleet.start()
    assert wait_until(lambda: run.done_count() >= 15, 120), f"no progress\n{run.procs.logs()}"
    first.kill9()
    wait_exit(first, 10)
    killed_at = run.done_count()
    state = read_state(run_dir)
    assert not state["final"], state["stage"]
    fleet.members.append((run.start_worker("late"), {}))  # starts while no manager listens
    wait_until(lambda: run.done_count() >= killed_at + 10, 60)
    # The late worker announces itself while no manager listens (else, on a
    # loaded machine, the others could finish the run before it is up, and
    # no manager would ever owe its worker_started a journal line).
    assert wait_until(lambda: announced(run, "late"), 60), f"the late worker never started\n{run.procs.logs()}"
    downtime_done = run.done_count() - killed_at
    time.sleep(0.5)
    second = start_manager(run, mine.root, run_dir)
    res = fleet.supervise(timeout_s=180)
    assert res.finished, f"run did not finish: {res}\n{run.procs.logs()}"
    rc = wait_exit(second, 60)
    assert rc == 0, second.log_tail()
    state = read_state(run_dir)
    assert state["final"] and state["stage"] == "done" and state["resumed"], state
    lines = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    assert [r["type"] for r in lines].count("run_resumed") == 1
    assert any(r["type"] == "worker_started" and "late" in r["data"].get("worker", "") for r in lines)
    whole, problems, complete = journal_verdict(run, run_dir)
    assert whole, problems[:10]
    assert_clean(
        run.verdict(reference),
        run,
        killed_at_done=killed_at,
        done_while_down=downtime_done,
        journal_whole=whole,
        journal_done=complete["done"],
    )


def announced(run: Run, tag: str) -> bool:
    """A ``worker_started`` event of a worker whose id holds ``tag`` is on the bus."""
    client = run.client()
    try:
        entries: Any = client.xrange(run.keys.events, "-", "+")
    finally:
        client.close()
    for _id, fields in entries:
        for raw in fields.values():
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if event.get("type") == "worker_started" and tag in str(event.get("worker", "")):
                return True
    return False
