"""``manager.scan.enqueue`` (Rust, pipelined) against a real Redis:
idempotence, re-runs, concurrent managers, lanes, script-cache flushes, the
wire form, and clear errors when Redis is away."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import redis

from bus import constants as c
from bus.enqueue import enqueue_pipelined
from bus.errors import BusUnavailable
from bus.keys import Keys
from bus.messages import Job
from bus.settings import RedisSettings
from manager import _core, scan
from tests.support.procs import free_port
from tests.support.scan_tree import MODEL, Tree, stream_jobs, tree_jobs


def test_a_plan_is_enqueued_once_and_a_rerun_enqueues_nothing(
    tmp_path: Path, settings: RedisSettings, redis_client: redis.Redis
) -> None:
    tree = Tree(tmp_path)
    for i in range(5):
        tree.add_input(f"s/cats/{i}.parquet", rows=30, row_group=10)
    plan = tree.plan(rows_per_part=20)
    assert len(plan.jobs) == 10
    assert scan.enqueue(settings, plan.jobs) == scan.EnqueueResult(new=10, existing=0)
    again = tree.plan(rows_per_part=20)
    assert scan.enqueue(settings, again.jobs) == scan.EnqueueResult(new=0, existing=10)
    keys = Keys(settings.namespace)
    assert redis_client.xlen(keys.queue("default")) == 10
    assert {v for v in redis_client.hvals(keys.state)} == {b"q"}
    assert int(redis_client.hget(keys.stats, "enqueued") or 0) == 10


def test_the_wire_form_is_exactly_the_python_one(settings: RedisSettings, redis_client: redis.Redis) -> None:
    jobs = [
        *tree_jobs(3),
        Job.create("chains/s/ünï/é 😀.parquet", "9-9", MODEL, (0, 10), column="body", id_column="id", lane="gpu"),
    ]
    scan.enqueue(settings, jobs)
    keys = Keys(settings.namespace)
    sent = stream_jobs(redis_client, keys) + stream_jobs(redis_client, keys, "gpu")
    assert sent == [j.to_json() for j in jobs]
    assert [Job.from_json(s) for s in sent] == jobs


def test_enqueue_creates_the_consumer_group_of_every_lane_used(
    settings: RedisSettings, redis_client: redis.Redis
) -> None:
    scan.enqueue(settings, tree_jobs(3, lane="gpu") + tree_jobs(2, lane="cpu", prefix="q"))
    keys = Keys(settings.namespace)
    for lane, n in (("gpu", 3), ("cpu", 2)):
        groups = redis_client.xinfo_groups(keys.queue(lane))
        assert [g["name"] for g in groups] == [c.GROUP.encode()]
        assert redis_client.xlen(keys.queue(lane)) == n
    assert redis_client.smembers(keys.lanes) == {b"gpu", b"cpu"}
    # Groups that already exist are fine (BUSYGROUP is not an error).
    assert scan.enqueue(settings, tree_jobs(3, lane="gpu")).existing == 3


def test_done_jobs_come_back_only_with_redo(settings: RedisSettings, redis_client: redis.Redis) -> None:
    jobs = tree_jobs(4)
    keys = Keys(settings.namespace)
    redis_client.hset(keys.state, mapping={jobs[0].id: c.STATE_DONE, jobs[1].id: c.STATE_DEAD})
    assert scan.enqueue(settings, jobs) == scan.EnqueueResult(new=2, existing=2)
    assert scan.enqueue(settings, jobs, redo=True) == scan.EnqueueResult(new=1, existing=3)
    assert redis_client.hget(keys.state, jobs[0].id) == b"q"
    assert redis_client.hget(keys.state, jobs[1].id) == b"x"


def test_two_managers_enqueuing_at_once_add_each_job_once(settings: RedisSettings, redis_client: redis.Redis) -> None:
    jobs = tree_jobs(3000)
    results: list[scan.EnqueueResult] = []
    start = threading.Barrier(3)

    def manager(order: list[Job]) -> None:
        start.wait(10)
        results.append(scan.enqueue(settings, order))

    threads = [threading.Thread(target=manager, args=(o,)) for o in (jobs, jobs[::-1], jobs[1000:] + jobs[:1000])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(r.new for r in results) == 3000
    assert sum(r.existing for r in results) == 6000
    keys = Keys(settings.namespace)
    sent = stream_jobs(redis_client, keys)
    assert len(sent) == 3000 and len({Job.from_json(s).id for s in sent}) == 3000


def test_a_script_cache_flush_mid_enqueue_loses_nothing(settings: RedisSettings, redis_client: redis.Redis) -> None:
    jobs = tree_jobs(6000)
    stop = threading.Event()

    def flusher() -> None:
        while not stop.is_set():
            redis_client.script_flush()
            stop.wait(0.002)

    t = threading.Thread(target=flusher)
    t.start()
    try:
        new, existing = _core.enqueue(
            jobs, namespace=settings.namespace, host=settings.host, port=settings.port, db=settings.db, batch=50
        )
    finally:
        stop.set()
        t.join(10)
    assert (new, existing) == (6000, 0)
    assert redis_client.xlen(Keys(settings.namespace).queue("default")) == 6000


def test_the_python_reference_enqueue_agrees(settings: RedisSettings, redis_client: redis.Redis) -> None:
    jobs = tree_jobs(50)
    assert enqueue_pipelined(settings, jobs[:20]) == (20, 0)
    assert scan.enqueue(settings, jobs) == scan.EnqueueResult(new=30, existing=20)
    assert enqueue_pipelined(settings, jobs) == (0, 50)


def test_nothing_to_enqueue_needs_no_redis() -> None:
    dead = RedisSettings(port=free_port())
    assert scan.enqueue(dead, []) == scan.EnqueueResult(0, 0)


def test_redis_away_is_bus_unavailable_and_the_password_is_not_shown() -> None:
    secret = "s3cr3t-pw-123"
    dead = RedisSettings.from_url(f"redis://:{secret}@127.0.0.1:{free_port()}/0")
    with pytest.raises(BusUnavailable) as e:
        scan.enqueue(dead, tree_jobs(1))
    assert secret not in str(e.value) and "Redis unavailable" in str(e.value)


def test_a_wrong_password_is_an_error_that_does_not_show_it(settings: RedisSettings) -> None:
    secret = "not-the-password-42"
    wrong = RedisSettings(
        host=settings.host, port=settings.port, db=settings.db, password=secret, namespace=settings.namespace
    )
    with pytest.raises(Exception) as e:
        scan.enqueue(wrong, tree_jobs(1))
    assert secret not in str(e.value)
