"""Scenario 3: redis-server (AOF on, ``appendfsync everysec``) SIGKILLed in the
middle of a run and restarted; the workers ride out the outage. Once plain,
once with the AOF's tail torn off (as a power cut leaves it): Redis then
refuses to start (``aof-load-truncated no``), ``redis-check-aof --fix`` cuts
the torn command, and the restarted Redis has forgotten the last jobs the
manager enqueued and the completions since (whose outputs are on disk). The manager's reconcile pass
(``manager.scan.reconcile``) puts back what was lost; completed work is not
redone (its outputs are on disk and up to date) and nothing is counted twice."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.fault.dataset import Corpus, jobs_for
from tests.fault.harness import Fleet
from tests.fault.kinds import WorkerKind
from tests.fault.runs import References, new_run
from tests.fault.scenarios import KINDS, assert_clean
from tests.support.procs import ProcessGroup, free_port, wait_until
from tests.support.redis_server import RedisServer, RedisStartError

pytestmark = pytest.mark.fault


def restart_after_torn_tail(server: RedisServer, keep_bytes: int) -> str:
    """Tear the AOF tail, show Redis refuses it, fix it, start again."""
    server.truncate_aof(keep_bytes)
    try:
        server.start()
    except RedisStartError as e:
        assert "redis-check-aof" in str(e) or "Unexpected end of file" in str(e), e
    else:
        raise AssertionError("Redis loaded a torn AOF although aof-load-truncated is off")
    fix_log = server.check_aof_fix()
    assert "Successfully truncated AOF" in fix_log, fix_log
    server.start()
    return fix_log


@pytest.mark.parametrize("torn", [False, True], ids=["kill9", "kill9-torn-aof"])
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.label)
def test_redis_killed_mid_run_is_healed_by_reconcile(
    kind: WorkerKind, torn: bool, procs: ProcessGroup, corpus: Corpus, references: References, tmp_path: Path
) -> None:
    reference = references.get(kind)
    server = RedisServer(tmp_path / "redis", free_port(), procs, extra=("--aof-load-truncated", "no"))
    server.start()
    run = new_run(server, procs, kind, corpus, tmp_path / "out", lease_ms=2000)
    jobs = jobs_for(corpus, corpus.files[:120], kind.model_id())
    run.enqueue(jobs[:80])
    fleet = Fleet(run, size=2, max_restarts=0, respawn_idle=True)
    fleet.start()
    assert wait_until(lambda: run.done_count() >= 15, 90), f"no progress\n{procs.logs()}"
    mark = server.aof_tail_file().stat().st_size
    done_at_mark = run.done_count()
    run.enqueue(jobs[80:])
    wait_until(lambda: run.done_count() >= done_at_mark + 5, 30)
    running_at_crash = sum(m.alive() for m, _env in fleet.members)
    done_at_crash = run.done_count()
    server.kill9()
    time.sleep(1.0)
    if torn:
        restart_after_torn_tail(server, keep_bytes=mark + 5)
    else:
        server.start()
    done_after_restart = run.done_count()
    forgotten = [j.id for j in run.enqueued if run.state_of(j.id) is None]
    if torn:
        assert forgotten, "the torn AOF should have lost the last enqueues"
        assert done_after_restart < done_at_crash, "the torn AOF should have lost the last completions"
    healed = run.reconcile()
    assert healed >= len(forgotten), f"reconcile re-enqueued {healed} of {len(forgotten)} forgotten jobs"
    res = fleet.supervise(timeout_s=150)
    assert res.finished, f"run did not finish after the restart: {res}\n{procs.logs()}"
    assert_clean(
        run.verdict(reference),
        run,
        torn=torn,
        forgotten=len(forgotten),
        reconciled=healed,
        running_at_crash=running_at_crash,
        done_at_crash=done_at_crash,
        done_after_restart=done_after_restart,
        respawned=res.respawned,
    )
