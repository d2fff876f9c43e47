"""Reconcile: heal the bus after Redis lost the tail of its AOF.

Redis runs with ``appendfsync everysec``: a crash may lose the last second of
writes. Afterwards a job can be

- unknown (its state entry was lost with its enqueue): enqueued again,
  through the normal idempotent ``enqueue.lua``;
- marked queued (``q``) while its message is gone: neither a live entry of
  its lane stream (pending, or not yet delivered) nor in the lane's delayed
  set. It is added back to its stream.

Done (``d``) and dead (``x``) jobs are left alone by the reconcile; a done
job whose output vanished from disk is queued again by ``requeue_vanished``.

Never twice: the live set of each lane is read in one ``MULTI`` (stream,
pending list, group position and delayed set at one instant; retries and
promotions move a job within its lane only), the re-add itself re-checks the
state atomically (``bus/lua/requeue_lost.lua``), and a lock key,
``<namespace>:lock:reconcile``, keeps two managers from reconciling at once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
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

EnqueueFn = Callable[..., Any]
"""``enqueue(settings, jobs, redo=False)``: ``manager.scan.enqueue``."""


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


def requeue_vanished(settings: RedisSettings, jobs: list[Job], output_root: Path, enqueue: EnqueueFn) -> list[Job]:
    """Queue again the jobs the bus marks done whose output is gone from disk.

    A job is marked done only after its output was renamed into place, so a
    done job without its output lost it afterwards (deleted by hand, a
    restored disk): without this, enqueuing skips it as done and the input
    never gets embeddings. ``jobs`` are those a scan found missing; returns
    the ones queued again (``enqueue`` is called with ``redo=True``)."""
    if not jobs:
        return []
    client = connect(settings)
    keys = Keys(settings.namespace)
    try:
        with translated():
            states = admin.states(client, keys, [j.id for j in jobs])
    finally:
        client.close()
    gone = [j for j, s in zip(jobs, states, strict=True) if s == c.STATE_DONE and not (output_root / j.out).exists()]
    if gone:
        enqueue(settings, gone, redo=True)
    return gone
