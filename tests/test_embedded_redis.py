"""The embedded Redis of the quick start runs the whole bus protocol."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from bus.embedded import EmbeddedRedis
from bus.messages import Job
from bus.redis_transport import RedisTransport


def test_embedded_redis_runs_the_protocol_and_persists_with_aof(tmp_path: Path) -> None:
    job = Job.create("chains/s/r/a.parquet", "1-2", "m@x")
    with EmbeddedRedis(tmp_path / "redis") as server:
        t = RedisTransport(redis.Redis.from_url(server.url), namespace="t")
        t.ensure_lanes(["default"])
        assert t.enqueue(job) is True
        d = t.claim("w", ["default"], block_ms=10)
        assert d is not None and d.job == job
        assert t.complete("w", d, rows=3).value == 1
        assert t.trim("default") >= 0
    assert list((tmp_path / "redis").glob("appendonly*")), "AOF is on, as on a fleet's Redis"
    assert server.proc is not None and server.proc.poll() is not None, "stopped on exit"


def test_embedded_redis_starts_from_a_relative_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``make run`` passes ``data/.embedfleet/redis``: redis-server changes into
    ``--dir`` before it opens ``--logfile``, so a relative path must not reach it."""
    monkeypatch.chdir(tmp_path)
    with EmbeddedRedis(Path("data") / "redis") as server:
        assert redis.Redis.from_url(server.url).ping()
    assert (tmp_path / "data" / "redis" / "redis.log").stat().st_size > 0
