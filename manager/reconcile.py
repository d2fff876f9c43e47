"""Reconcile: heal the bus after Redis lost the tail of its AOF.

Redis runs with ``appendfsync everysec``: a crash may lose the last second of
writes. Afterwards a job can be

- unknown (its state entry was lost with its enqueue): enqueued again,
  through the normal idempotent ``enqueue.lua``;
- marked queued (``q``) while its message is gone: neither a live entry of
  its lane stream (pending, or not yet delivered) nor in the lane's delayed
  set. It is added back to its stream.

Done (``d``) and dead (``x``) jobs are left alone.

Never twice: the live set of each lane is read in one ``MULTI`` (stream,
pending list, group position and delayed set at one instant; retries and
promotions move a job within its lane only), the re-add itself re-checks the
state atomically (``REQUEUE`` below), and a lock key,
``<namespace>:lock:reconcile``, keeps two managers from reconciling at once.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis

from bus import constants as c
from bus.errors import EmbedfleetError, TransientError
from bus.keys import Keys
from bus.messages import Job
from bus.redis_transport import RedisTransport, connect, translated
from bus.settings import RedisSettings

LOCK_SUFFIX = "lock:reconcile"
"""Key (under the namespace) held while a reconcile runs (STRING, a token)."""

LOCK_MS = 300_000
"""The lock expires by itself if its holder dies."""

LOCK_WAIT_S = 30.0
"""How long to wait for another manager's reconcile to finish."""

BATCH = 2_000
"""State lookups and re-adds per round trip."""

REQUEUE = """
-- requeue: put back a queued job whose message was lost, if still queued.
-- KEYS[1] state HASH, KEYS[2] queue STREAM of the job's lane, KEYS[3] lanes SET
-- ARGV[1] job id, ARGV[2] job JSON, ARGV[3] lane
-- Returns 1 when added back, 0 when the job is no longer queued.
if redis.call('HGET', KEYS[1], ARGV[1]) ~= 'q' then return 0 end
redis.call('XADD', KEYS[2], '*', 'job', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[3])
return 1
"""

UNLOCK = """
-- unlock: delete KEYS[1] only if it still holds this holder's token ARGV[1].
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

EnqueueFn = Callable[[RedisSettings, list[Job]], Any]


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def _stream_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _job_id(raw: bytes | str | None) -> str | None:
    try:
        return Job.from_json(raw or b"").id
    except EmbedfleetError:
        return None


@contextmanager
def _lock(client: redis.Redis, key: str) -> Iterator[None]:
    token = secrets.token_hex(16)
    deadline = time.monotonic() + LOCK_WAIT_S
    while not client.set(key, token, nx=True, px=LOCK_MS):
        if time.monotonic() > deadline:
            raise TransientError(f"another manager is reconciling (lock {key} held); try again later")
        time.sleep(0.2)
    try:
        yield
    finally:
        client.eval(UNLOCK, 1, key, token)


def _states(client: redis.Redis, keys: Keys, ids: list[str]) -> list[str | None]:
    out: list[str | None] = []
    for i in range(0, len(ids), BATCH):
        vals = client.hmget(keys.state, ids[i : i + BATCH])
        out.extend(_s(v) if v is not None else None for v in vals)
    return out


def live_ids(client: redis.Redis, keys: Keys, lane: str) -> set[str]:
    """Ids of the jobs a lane still holds: its stream entries that are pending
    or not yet delivered, and its delayed retries, read at one instant."""
    q = keys.queue(lane)
    pipe = client.pipeline(transaction=True)
    pipe.xinfo_groups(q)
    pipe.xpending_range(q, c.GROUP, min="-", max="+", count=1 << 62)
    pipe.xrange(q, "-", "+")
    pipe.zrange(keys.delayed(lane), 0, -1)
    groups, pending, entries, delayed = pipe.execute()
    last = next((_s(g["last-delivered-id"]) for g in groups if _s(g["name"]) == c.GROUP), "0-0")
    last_id = _stream_id(last)
    pending_ids = {_s(p["message_id"]) for p in pending}
    live = {_job_id(m) for m in delayed}
    for entry_id, fields in entries:
        eid = _s(entry_id)
        if eid in pending_ids or _stream_id(eid) > last_id:
            live.add(_job_id(fields.get(c.JOB_FIELD.encode()) or fields.get(c.JOB_FIELD)))
    return {x for x in live if x is not None}


def _requeue(client: redis.Redis, keys: Keys, jobs: list[Job]) -> int:
    script = client.register_script(REQUEUE)
    added = 0
    for i in range(0, len(jobs), BATCH):
        pipe = client.pipeline(transaction=False)
        for j in jobs[i : i + BATCH]:
            script(keys=[keys.state, keys.queue(j.lane), keys.lanes], args=[j.id, j.to_json(), j.lane], client=pipe)
        added += sum(int(x) for x in pipe.execute())
    return added


def reconcile(settings: RedisSettings, jobs: list[Job], enqueue: EnqueueFn) -> int:
    """Re-add what a Redis crash lost among ``jobs``; returns how many."""
    client = connect(settings)
    keys = Keys(settings.namespace)
    try:
        with translated(), _lock(client, f"{settings.namespace}:{LOCK_SUFFIX}"):
            states = _states(client, keys, [j.id for j in jobs])
            lost = [j for j, s in zip(jobs, states, strict=True) if s is None]
            queued = [j for j, s in zip(jobs, states, strict=True) if s == c.STATE_QUEUED]
            added = int(enqueue(settings, lost).new) if lost else 0
            if not queued:
                return added
            lanes = {j.lane for j in queued} | {_s(x) for x in client.smembers(keys.lanes)}
            RedisTransport(client, namespace=settings.namespace).ensure_lanes(sorted(lanes))
            live: set[str] = set()
            for lane in sorted(lanes):
                live |= live_ids(client, keys, lane)
            return added + _requeue(client, keys, [j for j in queued if j.id not in live])
    finally:
        client.close()
