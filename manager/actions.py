"""Fleet actions shared by the CLI and the HTTP API: pause, resume, drain,
requeue-failed. (cluster-now needs a running coordinator: see
``manager.coordinator``.)

- pause: workers take no new job (running ones finish).
- resume: clears both pause and drain.
- drain: each worker exits after its current job.
- requeue-failed: every dead-lettered job goes back to its lane as a fresh
  first attempt; its dead letter is removed. Atomic per job (the script
  below); a job that was completed or requeued meanwhile is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import redis

from bus import constants as c
from bus.errors import ProtocolError
from bus.keys import Keys
from bus.messages import Job
from bus.redis_transport import translated

ACTIONS = ("pause", "resume", "drain", "requeue-failed", "cluster-now")

# KEYS[1] state HASH, KEYS[2] lane STREAM, KEYS[3] stats HASH, KEYS[4] errors HASH,
# KEYS[5] dead STREAM, KEYS[6] lanes SET
# ARGV[1] job id, ARGV[2] job JSON (attempt 1), ARGV[3] dead entry id, ARGV[4] lane
# Returns 1 when requeued, 0 when the job is no longer dead (entry removed all the same).
REQUEUE_LUA = """
redis.call('XDEL', KEYS[5], ARGV[3])
if redis.call('HGET', KEYS[1], ARGV[1]) ~= 'x' then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], 'q')
redis.call('XADD', KEYS[2], '*', 'job', ARGV[2])
redis.call('SADD', KEYS[6], ARGV[4])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'dead', -1)
redis.call('HINCRBY', KEYS[3], 'queued', 1)
redis.call('HINCRBY', KEYS[3], 'requeued', 1)
return 1
"""


@dataclass(frozen=True)
class RequeueResult:
    requeued: int
    skipped: int
    """Dead letters left alone: unreadable messages, or jobs no longer dead."""


def set_control(client: redis.Redis, namespace: str, name: str, on: bool) -> None:
    key = Keys(namespace).control
    with translated():
        if on:
            client.hset(key, name, "1")
        else:
            client.hdel(key, name)


def pause(client: redis.Redis, namespace: str) -> str:
    set_control(client, namespace, "paused", True)
    return "paused: workers take no new job"


def resume(client: redis.Redis, namespace: str) -> str:
    with translated():
        client.hdel(Keys(namespace).control, "paused", "drain")
    return "resumed: pause and drain cleared"


def drain(client: redis.Redis, namespace: str) -> str:
    set_control(client, namespace, "drain", True)
    return "draining: each worker exits after its current job"


def requeue_failed(client: redis.Redis, namespace: str, batch: int = 500) -> RequeueResult:
    """Put every dead-lettered job back on its lane as a first attempt."""
    k = Keys(namespace)
    script = client.register_script(REQUEUE_LUA)
    requeued = skipped = 0
    start = "-"
    with translated():
        while True:
            entries: list[Any] = client.xrange(k.dead, min=start, count=batch)  # type: ignore[assignment]
            for eid, fields in entries:
                raw = fields.get(c.JOB_FIELD.encode()) or b""
                try:
                    job = replace(Job.from_json(raw), attempt=1)
                except ProtocolError:
                    skipped += 1  # unreadable: nothing to requeue; the letter stays as evidence
                    continue
                _ensure_group(client, k.queue(job.lane))
                keys = [k.state, k.queue(job.lane), k.stats, k.errors, k.dead, k.lanes]
                if int(script(keys=keys, args=[job.id, job.to_json(), eid, job.lane])):
                    requeued += 1
                else:
                    skipped += 1
            if len(entries) < batch:
                break
            last = entries[-1][0].decode()
            start = "(" + last
    return RequeueResult(requeued, skipped)


def _ensure_group(client: redis.Redis, stream: str) -> None:
    try:
        client.xgroup_create(stream, c.GROUP, id="0", mkstream=True)
    except redis.exceptions.ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise
