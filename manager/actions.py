"""Fleet actions shared by the CLI and the HTTP API: pause, resume, drain,
requeue-failed. (cluster-now needs a running coordinator: see
``manager.coordinator``.)

- pause: workers take no new job (running ones finish).
- resume: clears both pause and drain.
- drain: each worker exits after its current job.
- requeue-failed: every dead-lettered job goes back to its lane as a fresh
  first attempt; its dead letter is removed. Atomic per job
  (``bus/lua/requeue_dead.lua``); a job that was completed or requeued
  meanwhile is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from bus import admin
from bus.keys import Keys
from bus.redis_transport import RedisClient, translated

ACTIONS = ("pause", "resume", "drain", "requeue-failed", "cluster-now")


@dataclass(frozen=True)
class RequeueResult:
    requeued: int
    skipped: int
    """Dead letters left alone: unreadable messages, or jobs no longer dead."""


def set_control(client: RedisClient, namespace: str, name: str, on: bool) -> None:
    with translated():
        admin.set_control(client, Keys(namespace), name, on)


def pause(client: RedisClient, namespace: str) -> str:
    set_control(client, namespace, "paused", True)
    return "paused: workers take no new job"


def resume(client: RedisClient, namespace: str) -> str:
    with translated():
        admin.clear_controls(client, Keys(namespace))
    return "resumed: pause and drain cleared"


def drain(client: RedisClient, namespace: str) -> str:
    set_control(client, namespace, "drain", True)
    return "draining: each worker exits after its current job"


def requeue_failed(client: RedisClient, namespace: str, batch: int = 500) -> RequeueResult:
    """Put every dead-lettered job back on its lane as a first attempt
    (``bus/lua/requeue_dead.lua``, atomic per job)."""
    with translated():
        return RequeueResult(*admin.requeue_dead(client, Keys(namespace), batch))
