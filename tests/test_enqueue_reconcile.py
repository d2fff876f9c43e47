"""``manager.scan.reconcile`` against a real Redis: after a crash lost the tail
of the AOF, the jobs whose message or state vanished come back, and a job
still present (undelivered, pending with a worker, or waiting for a retry)
is never added twice."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis

from bus import constants as c
from bus.errors import TransientError
from bus.keys import Keys
from bus.messages import Job
from bus.redis_transport import RedisTransport
from bus.settings import RedisSettings
from manager import reconcile as rec
from manager import scan
from tests.support.scan_tree import stream_jobs, tree_jobs


def entry_ids(client: redis.Redis, keys: Keys, lane: str = "default") -> dict[str, bytes]:
    """job id -> stream entry id."""
    entries: Any = client.xrange(keys.queue(lane))
    return {Job.from_json(f[b"job"]).id: eid for eid, f in entries}


def ids_on_bus(client: redis.Redis, keys: Keys, lane: str = "default") -> list[str]:
    return sorted(Job.from_json(s).id for s in stream_jobs(client, keys, lane))


@pytest.fixture
def keys(settings: RedisSettings) -> Keys:
    return Keys(settings.namespace)


def test_lost_messages_of_queued_jobs_come_back_once(
    settings: RedisSettings, redis_client: redis.Redis, keys: Keys
) -> None:
    jobs = tree_jobs(20)
    scan.enqueue(settings, jobs)
    eids = entry_ids(redis_client, keys)
    lost = [j.id for j in jobs[5:9]]
    redis_client.xdel(keys.queue("default"), *[eids[i] for i in lost])
    assert scan.reconcile(settings, jobs) == 4
    assert ids_on_bus(redis_client, keys) == sorted(j.id for j in jobs)
    assert scan.reconcile(settings, jobs) == 0
    assert redis_client.xlen(keys.queue("default")) == 20


def test_jobs_whose_state_was_lost_are_enqueued_again(
    settings: RedisSettings, redis_client: redis.Redis, keys: Keys
) -> None:
    jobs = tree_jobs(10)
    scan.enqueue(settings, jobs[:6])
    # The crash lost the enqueue of the last four entirely, and one state entry.
    redis_client.hdel(keys.state, jobs[0].id)
    redis_client.xdel(keys.queue("default"), entry_ids(redis_client, keys)[jobs[0].id])
    assert scan.reconcile(settings, jobs) == 5
    assert ids_on_bus(redis_client, keys) == sorted(j.id for j in jobs)
    assert {redis_client.hget(keys.state, j.id) for j in jobs} == {b"q"}


def test_pending_delayed_done_and_dead_jobs_are_left_alone(
    settings: RedisSettings, redis_client: redis.Redis, keys: Keys
) -> None:
    jobs = tree_jobs(6)
    scan.enqueue(settings, jobs)
    t = RedisTransport(redis_client, namespace=settings.namespace)
    # One job pending with a worker, one acknowledged and waiting for a retry.
    pending = t.claim("w1", ["default"], 0)
    retried = t.claim("w1", ["default"], 0)
    assert pending is not None and retried is not None
    t.retry("w1", retried, "boom", 60_000)
    assert redis_client.zcard(keys.delayed("default")) == 1
    # One done, one dead; their entries gone (trimmed) as a finished run leaves them.
    redis_client.hset(keys.state, mapping={jobs[4].id: c.STATE_DONE, jobs[5].id: c.STATE_DEAD})
    eids = entry_ids(redis_client, keys)
    redis_client.xdel(keys.queue("default"), eids[jobs[4].id], eids[jobs[5].id])
    before = redis_client.xlen(keys.queue("default"))
    assert scan.reconcile(settings, jobs) == 0
    assert redis_client.xlen(keys.queue("default")) == before


def test_an_acknowledged_entry_of_a_queued_job_does_not_count_as_present(
    settings: RedisSettings, redis_client: redis.Redis, keys: Keys
) -> None:
    jobs = tree_jobs(2)
    scan.enqueue(settings, jobs)
    t = RedisTransport(redis_client, namespace=settings.namespace)
    d = t.claim("w1", ["default"], 0)
    assert d is not None
    # The crash kept the acknowledgement but lost the retry's delayed entry.
    redis_client.xack(keys.queue("default"), c.GROUP, d.entry_id)
    assert scan.reconcile(settings, jobs) == 1
    assert scan.reconcile(settings, jobs) == 0


def test_a_lane_the_jobs_moved_from_still_counts(settings: RedisSettings, redis_client: redis.Redis) -> None:
    jobs = tree_jobs(3, lane="gpu")
    scan.enqueue(settings, jobs)
    rerouted = [Job.create(j.path, j.fingerprint, j.model, j.rows, lane="default") for j in jobs]
    assert scan.reconcile(settings, rerouted) == 0


def test_two_reconciles_at_once_re_add_each_job_once(
    settings: RedisSettings, redis_client: redis.Redis, keys: Keys
) -> None:
    jobs = tree_jobs(400)
    scan.enqueue(settings, jobs)
    eids = entry_ids(redis_client, keys)
    redis_client.xdel(keys.queue("default"), *[eids[j.id] for j in jobs[::2]])
    counts: list[int] = []
    start = threading.Barrier(2)

    def manager() -> None:
        start.wait(10)
        counts.append(scan.reconcile(settings, jobs))

    threads = [threading.Thread(target=manager) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert sorted(counts) == [0, 200]
    assert ids_on_bus(redis_client, keys) == sorted(j.id for j in jobs)


def test_a_held_lock_makes_reconcile_wait_then_give_up(
    settings: RedisSettings, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rec, "LOCK_WAIT_S", 0.3)
    redis_client.set(f"{settings.namespace}:{rec.LOCK_SUFFIX}", "someone-else", px=10_000)
    with pytest.raises(TransientError, match="another manager is reconciling"):
        scan.reconcile(settings, tree_jobs(1))
