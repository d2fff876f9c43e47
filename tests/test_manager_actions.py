"""pause, resume, drain and requeue-failed against a real Redis, through
``manager.actions`` and the ``python -m manager`` commands."""

from __future__ import annotations

import json

import pytest
import redis

from bus.messages import Job
from bus.redis_transport import RedisTransport
from bus.settings import RedisSettings
from manager import actions
from manager.__main__ import main as manager_main
from tests.support.fakes import FakeWorker, make_jobs
from tests.support.procs import free_port


def kill_jobs(transport: RedisTransport, jobs: list[Job], reason: str = "bad input") -> None:
    transport.ensure_lanes(["default"])
    for job in jobs:
        transport.enqueue(job)
    for _ in jobs:
        d = transport.claim("w", ["default"], 0)
        assert d is not None
        d = type(d)(job=d.job.next_attempt().next_attempt(), lane=d.lane, entry_id=d.entry_id, deliveries=3)
        transport.dead_letter("w", d, f"{d.job.path}: {reason}", "w")


def test_requeue_failed_puts_dead_jobs_back_as_first_attempts(
    transport: RedisTransport, redis_client: redis.Redis
) -> None:
    jobs = make_jobs(3)
    kill_jobs(transport, jobs)
    assert transport.stats()["dead"] == 3 and redis_client.xlen("eftest:dead") == 3
    res = actions.requeue_failed(redis_client, "eftest")
    assert (res.requeued, res.skipped) == (3, 0)
    stats = transport.stats()
    assert stats["dead"] == 0 and stats["queued"] == 3 and stats["requeued"] == 3
    assert redis_client.xlen("eftest:dead") == 0 and redis_client.hlen("eftest:errors") == 0
    seen = []
    for _ in jobs:
        d = transport.claim("w2", ["default"], 0)
        assert d is not None
        seen.append((d.job.id, d.job.attempt))
    assert sorted(seen) == sorted((j.id, 1) for j in jobs)
    assert actions.requeue_failed(redis_client, "eftest").requeued == 0  # nothing left: a no-op


def test_requeue_leaves_unreadable_and_no_longer_dead_letters(
    transport: RedisTransport, redis_client: redis.Redis
) -> None:
    (job,) = make_jobs(1)
    kill_jobs(transport, [job])
    redis_client.xadd("eftest:dead", {"job": "{garbage", "reason": "unreadable", "attempts": "1", "worker": "w"})
    redis_client.hset("eftest:state", job.id, "d")  # completed meanwhile by a late worker
    res = actions.requeue_failed(redis_client, "eftest")
    assert (res.requeued, res.skipped) == (0, 2)
    assert redis_client.xlen("eftest:dead") == 1  # the unreadable letter stays as evidence


def test_requeued_jobs_run_to_completion(
    settings: RedisSettings, transport: RedisTransport, redis_client: redis.Redis
) -> None:
    jobs = make_jobs(4)
    kill_jobs(transport, jobs)
    actions.requeue_failed(redis_client, "eftest")
    w = FakeWorker(settings, "fixer", burst=True).start()
    w.thread.join(20)
    assert w.jobs_done == 4 and transport.stats()["done"] == 4


@pytest.mark.parametrize(("command", "paused", "drain"), [("pause", True, False), ("drain", False, True)])
def test_control_commands(
    settings: RedisSettings,
    transport: RedisTransport,
    redis_client: redis.Redis,
    capsys: pytest.CaptureFixture[str],
    command: str,
    paused: bool,
    drain: bool,
) -> None:
    url = f"redis://{settings.host}:{settings.port}/0"
    assert manager_main([command, "--redis-url", url, "--namespace", "eftest"]) == 0
    assert (transport.controls().paused, transport.controls().drain) == (paused, drain)
    assert manager_main(["resume", "--redis-url", url, "--namespace", "eftest"]) == 0
    assert (transport.controls().paused, transport.controls().drain) == (False, False)
    events = [json.loads(f[b"event"]) for _, f in redis_client.xrange("eftest:events")]
    assert [(e["type"], e["action"], e["source"]) for e in events] == [
        ("operator_action", command, "cli"),
        ("operator_action", "resume", "cli"),
    ]
    assert "resumed" in capsys.readouterr().out


def test_requeue_failed_command(
    settings: RedisSettings, transport: RedisTransport, capsys: pytest.CaptureFixture[str]
) -> None:
    kill_jobs(transport, make_jobs(2))
    url = f"redis://{settings.host}:{settings.port}/0"
    assert manager_main(["requeue-failed", "--redis-url", url, "--namespace", "eftest"]) == 0
    assert "2 dead-lettered jobs requeued" in capsys.readouterr().out


def test_commands_need_a_redis_url(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("EMBEDFLEET_REDIS_URL", raising=False)
    assert manager_main(["pause"]) == 2  # a usage error, not 1 ("a job was dead-lettered")
    assert "error: no Redis: pass --redis-url" in capsys.readouterr().err


def test_unreachable_redis_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    rc = manager_main(["pause", "--redis-url", f"redis://127.0.0.1:{port}/0"])
    err = capsys.readouterr().err
    assert rc == 75 and f"cannot reach Redis at redis://127.0.0.1:{port}/0 (Redis unavailable" in err
