"""The manager's operations on the bus, which no worker performs: fleet
controls, requeue-failed, and the Redis side of the reconcile pass (its lock,
the states of many jobs, a lane's live set, re-adding lost messages). Every
state change is a script in ``bus/lua`` (``requeue_dead``, ``requeue_lost``,
``unlock``); callers wrap calls in ``translated()``."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import redis

from bus import constants as c
from bus.errors import EmbedfleetError, ProtocolError, TransientError
from bus.keys import Keys
from bus.messages import Job
from bus.redis_transport import script_source
from bus.replies import as_text

BATCH = 2_000
"""State look-ups and re-adds per round trip."""

LOCK_WAIT_S = 30.0
"""How long to wait for another manager's reconcile to finish."""


# -- controls -------------------------------------------------------------------


def set_control(client: redis.Redis, keys: Keys, name: str, on: bool) -> None:
    """Set (``"1"``) or clear one field of the control hash."""
    if on:
        client.hset(keys.control, name, "1")
    else:
        client.hdel(keys.control, name)


def clear_controls(client: redis.Redis, keys: Keys) -> None:
    """Clear pause and drain."""
    client.hdel(keys.control, "paused", "drain")


# -- requeue-failed ---------------------------------------------------------------


def ensure_group(client: redis.Redis, stream: str) -> None:
    """Create a lane's stream and the workers' group (an existing one is kept)."""
    try:
        client.xgroup_create(stream, c.GROUP, id="0", mkstream=True)
    except redis.exceptions.ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise


def requeue_dead(client: redis.Redis, keys: Keys, batch: int = 500) -> tuple[int, int]:
    """Put every dead-lettered job back on its lane as a first attempt:
    (requeued, left alone). Unreadable letters stay as evidence."""
    script = client.register_script(script_source("requeue_dead"))
    requeued = skipped = 0
    start = "-"
    while True:
        entries: list[Any] = client.xrange(keys.dead, min=start, count=batch)  # type: ignore[assignment]
        for eid, fields in entries:
            raw = fields.get(c.JOB_FIELD.encode()) or b""
            try:
                job = replace(Job.from_json(raw), attempt=1)
            except ProtocolError:
                skipped += 1
                continue
            ensure_group(client, keys.queue(job.lane))
            script_keys = [keys.state, keys.queue(job.lane), keys.stats, keys.errors, keys.dead, keys.lanes]
            if int(script(keys=script_keys, args=[job.id, job.to_json(), eid, job.lane])):
                requeued += 1
            else:
                skipped += 1
        if len(entries) < batch:
            return requeued, skipped
        start = "(" + as_text(entries[-1][0])


# -- reconcile --------------------------------------------------------------------


@contextmanager
def reconcile_lock(client: redis.Redis, keys: Keys, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """Hold ``<ns>:lock:reconcile`` for the block; wait up to ``wait_s`` for
    another holder, then fail with ``TransientError``."""
    key, token = keys.lock_reconcile, secrets.token_hex(16)
    deadline = time.monotonic() + wait_s
    while not client.set(key, token, nx=True, px=c.RECONCILE_LOCK_MS):
        if time.monotonic() > deadline:
            raise TransientError(f"another manager is reconciling (lock {key} held); try again later")
        time.sleep(0.2)
    try:
        yield
    finally:
        client.register_script(script_source("unlock"))(keys=[key], args=[token])


def states(client: redis.Redis, keys: Keys, ids: list[str]) -> list[str | None]:
    """The state letter of each job (``None``: unknown)."""
    out: list[str | None] = []
    for i in range(0, len(ids), BATCH):
        out.extend(None if v is None else as_text(v) for v in client.hmget(keys.state, ids[i : i + BATCH]))
    return out


def known_lanes(client: redis.Redis, keys: Keys) -> set[str]:
    """Lanes that ever received a job."""
    return {as_text(x) for x in client.smembers(keys.lanes)}


def _stream_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _job_id(raw: bytes | str | None) -> str | None:
    try:
        return Job.from_json(raw or b"").id
    except EmbedfleetError:
        return None


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
    last = next((as_text(g["last-delivered-id"]) for g in groups if as_text(g["name"]) == c.GROUP), "0-0")
    last_id = _stream_id(last)
    pending_ids = {as_text(p["message_id"]) for p in pending}
    live = {_job_id(m) for m in delayed}
    for entry_id, fields in entries:
        eid = as_text(entry_id)
        if eid in pending_ids or _stream_id(eid) > last_id:
            live.add(_job_id(fields.get(c.JOB_FIELD.encode()) or fields.get(c.JOB_FIELD)))
    return {x for x in live if x is not None}


def requeue_lost(client: redis.Redis, keys: Keys, jobs: list[Job]) -> int:
    """Re-add the messages of jobs still queued whose entries were lost;
    returns how many were added (each re-checked atomically)."""
    script = client.register_script(script_source("requeue_lost"))
    added = 0
    for i in range(0, len(jobs), BATCH):
        pipe = client.pipeline(transaction=False)
        for j in jobs[i : i + BATCH]:
            script(keys=[keys.state, keys.queue(j.lane), keys.lanes], args=[j.id, j.to_json(), j.lane], client=pipe)
        added += sum(int(x) for x in pipe.execute())
    return added
