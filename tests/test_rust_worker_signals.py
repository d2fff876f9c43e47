"""The Rust worker as a process: graceful and immediate stops, the job-timeout
watchdog, a stopped worker whose lease was taken over, reconnecting while
Redis is away, and the memory ceiling. Jobs use the stand-in embedder with a
simulated cost per row, so a job runs for a known few seconds."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from bus.redis_transport import RedisTransport
from bus.settings import RedisSettings
from tests.support.procs import free_port
from tests.support.redis_server import start_redis
from tests.support.rust_worker import (
    dead_letters,
    enqueue_files,
    events,
    stats,
    text_hash,
    worker_cmd,
    worker_env,
    write_texts,
)

WORKER_ID = "rust-signals"
SLOW = ("--embedder", "hash", "--hash-seconds-per-row", "0.01", "--worker-id", WORKER_ID)


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextmanager
def worker(cmd: list[str], logs: Path) -> Iterator[subprocess.Popen[str]]:
    """A running worker process; killed at the end if still alive."""
    with open(logs, "w") as err:
        proc = subprocess.Popen(cmd, env=worker_env(), stdout=subprocess.DEVNULL, stderr=err, text=True)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def two_jobs(t: RedisTransport, data: Path, rows: int = 300) -> None:
    files = [
        write_texts(data / "chains" / "2024-01" / "s" / f"part-{n}.parquet", [f"text {n} {i}" for i in range(rows)])
        for n in range(2)
    ]
    t.ensure_lanes(["default"])
    enqueue_files(t, data, files)


def pending(r: redis.Redis, ns: str) -> int:
    return int(r.xpending(f"{ns}:q:default", "workers")["pending"])


def test_sigterm_finishes_the_current_job_then_exits_0(
    worker_bin: Path,
    settings: RedisSettings,
    transport: RedisTransport,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    two_jobs(transport, data)
    with worker(worker_cmd(worker_bin, settings, data, *SLOW), tmp_path / "err.log") as proc:
        wait_for("a claimed job", lambda: pending(redis_client, settings.namespace) == 1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    s = stats(redis_client, settings.namespace)
    assert s["done"] == 1 and s["queued"] == 1, "the running job finished, the next one was not taken"
    assert pending(redis_client, settings.namespace) == 0
    assert [e["type"] for e in events(redis_client, settings.namespace)][-1] == "worker_stopped"
    assert not redis_client.hexists(f"{settings.namespace}:workers", WORKER_ID)


def test_an_idle_worker_stopped_says_so_and_reports_no_outage(
    worker_bin: Path,
    settings: RedisSettings,
    transport: RedisTransport,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    """SIGTERM while the worker waits for a job interrupts its blocking read:
    that must read as a stop, not as "Redis unavailable … trying again"."""
    transport.ensure_lanes(["default"])
    (tmp_path / "data").mkdir()
    log = tmp_path / "err.log"
    with worker(worker_cmd(worker_bin, settings, tmp_path / "data", *SLOW), log) as proc:
        wait_for("registration", lambda: redis_client.hexists(f"{settings.namespace}:workers", WORKER_ID))
        time.sleep(0.5)  # into the blocking read for the next job
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    text = log.read_text()
    assert "stop requested" in text
    assert "unavailable" not in text and "trying again" not in text, text


def test_a_second_signal_exits_at_once_leaving_the_lease(
    worker_bin: Path,
    settings: RedisSettings,
    transport: RedisTransport,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    two_jobs(transport, data, rows=2000)
    with worker(worker_cmd(worker_bin, settings, data, *SLOW), tmp_path / "err.log") as proc:
        wait_for("a claimed job", lambda: pending(redis_client, settings.namespace) == 1)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(5) == 128 + signal.SIGINT
    assert stats(redis_client, settings.namespace).get("done", 0) == 0
    assert pending(redis_client, settings.namespace) == 1, "the lease is left to expire"


def test_a_job_past_the_timeout_is_given_back_and_the_worker_exits_3(
    worker_bin: Path,
    settings: RedisSettings,
    transport: RedisTransport,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    two_jobs(transport, data)
    cmd = worker_cmd(worker_bin, settings, data, *SLOW, "--job-timeout", "1")
    with worker(cmd, tmp_path / "err.log") as proc:
        assert proc.wait(30) == 3
    ns = settings.namespace
    assert stats(redis_client, ns)["retried"] == 1
    reason = next(iter(text_hash(redis_client, f"{ns}:errors").values()))
    assert "job ran past --job-timeout" in reason and reason.startswith("chains/2024-01/s/part-")
    assert any(e["type"] == "job_retry" for e in events(redis_client, ns))
    assert pending(redis_client, ns) == 0, "given back at once, not left to the lease"


def test_a_stopped_worker_cannot_count_a_job_taken_over(
    worker_bin: Path,
    settings: RedisSettings,
    transport: RedisTransport,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    two_jobs(transport, data)
    ns = settings.namespace
    thief = RedisTransport(redis_client, namespace=ns, lease_ms=1000, autoclaim_every_s=0)
    with worker(worker_cmd(worker_bin, settings, data, *SLOW, "--lease-ms", "1000"), tmp_path / "err.log") as proc:
        wait_for("a claimed job", lambda: pending(redis_client, ns) == 1)
        proc.send_signal(signal.SIGSTOP)
        time.sleep(1.5)
        d = thief.claim("thief", ["default"], block_ms=10)
        assert d is not None and d.deliveries == 2, "the expired lease was taken over"
        assert thief.complete("thief", d, rows=300).value == 1
        proc.send_signal(signal.SIGCONT)
        wait_for("the late completion", lambda: any(e["type"] == "lease_lost" for e in events(redis_client, ns)))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    s = stats(redis_client, ns)
    assert s["done"] == 2 and s["queued"] == 0, "the thief's job and the next one, each counted once"
    assert s.get("duplicates", 0) == 0


def test_reconnects_with_backoff_while_redis_is_away(worker_bin: Path, tmp_path: Path) -> None:
    port = free_port()
    persist = ("--appendonly", "yes", "--appendfsync", "always")
    server = start_redis(tmp_path / "redis", port, *persist)
    settings = RedisSettings.from_url(f"redis://127.0.0.1:{port}/0", namespace="efreconnect")
    r = redis.Redis(port=port)
    data = tmp_path / "data"
    (data / "chains").mkdir(parents=True)
    log = tmp_path / "err.log"
    try:
        with worker(
            worker_cmd(worker_bin, settings, data, "--embedder", "hash", "--worker-id", WORKER_ID), log
        ) as proc:
            wait_for("registration", lambda: r.hexists("efreconnect:workers", WORKER_ID))
            server.kill()
            server.wait(10)
            time.sleep(2.0)
            assert proc.poll() is None, "the worker waits for Redis instead of exiting"
            server = start_redis(tmp_path / "redis", port, *persist)
            t = RedisTransport.from_settings(settings)
            enqueue_files(t, data, [write_texts(data / "chains" / "2024-01" / "r" / "a.parquet", ["x", "y"])])
            wait_for("the job done after the outage", lambda: stats(r, "efreconnect").get("done") == 1, 60)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        assert "trying again in" in log.read_text()
    finally:
        server.kill()
        server.wait(10)


def test_a_part_beyond_the_memory_ceiling_is_refused_not_crashed(
    worker_bin: Path,
    settings: RedisSettings,
    transport: RedisTransport,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    f = write_texts(data / "chains" / "2024-01" / "m" / "a.parquet", ["x"])
    enqueue_files(transport, data, [f])
    cmd = worker_cmd(
        worker_bin, settings, data, "--burst", "--embedder", "hash", "--max-memory", "1M", "--max-deliveries", "1"
    )
    proc = subprocess.run(cmd, env=worker_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    reason = dead_letters(redis_client, settings.namespace)["chains/2024-01/m/a.parquet"]
    assert "--max-memory leaves" in reason
    record_events = [e for e in events(redis_client, settings.namespace) if e["type"] == "job_dead"]
    assert json.dumps(record_events[0]["error"]) == json.dumps(reason)
