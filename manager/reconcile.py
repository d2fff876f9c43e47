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
state atomically (``bus/lua/requeue_lost.lua``), and a lock key,
``<namespace>:lock:reconcile``, keeps two managers from reconciling at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bus import admin
from bus import constants as c
from bus.keys import Keys
from bus.messages import Job
from bus.redis_transport import RedisTransport, connect, translated
from bus.settings import RedisSettings

LOCK_SUFFIX = c.KEY_LOCK_RECONCILE
"""Key (under the namespace) held while a reconcile runs (STRING, a token)."""

LOCK_WAIT_S = admin.LOCK_WAIT_S
"""How long to wait for another manager's reconcile to finish."""

EnqueueFn = Callable[[RedisSettings, list[Job]], Any]


def reconcile(settings: RedisSettings, jobs: list[Job], enqueue: EnqueueFn) -> int:
    """Re-add what a Redis crash lost among ``jobs``; returns how many."""
    client = connect(settings)
    keys = Keys(settings.namespace)
    try:
        with translated(), admin.reconcile_lock(client, keys, LOCK_WAIT_S):
            states = admin.states(client, keys, [j.id for j in jobs])
            lost = [j for j, s in zip(jobs, states, strict=True) if s is None]
            queued = [j for j, s in zip(jobs, states, strict=True) if s == c.STATE_QUEUED]
            added = int(enqueue(settings, lost).new) if lost else 0
            if not queued:
                return added
            lanes = {j.lane for j in queued} | admin.known_lanes(client, keys)
            RedisTransport(client, namespace=settings.namespace).ensure_lanes(sorted(lanes))
            live: set[str] = set()
            for lane in sorted(lanes):
                live |= admin.live_ids(client, keys, lane)
            return added + admin.requeue_lost(client, keys, [j for j in queued if j.id not in live])
    finally:
        client.close()
