"""Enqueue through redis-py: one pipeline of ``EVALSHA enqueue.lua`` per batch.

The manager's enqueue is Rust (``manager._core.enqueue``), built without TLS;
this is its path for ``rediss://`` and the enqueue benchmark's baseline. The
script is the same one (``bus/lua/enqueue.lua``), so a job id already known
is left alone either way.
"""

from __future__ import annotations

from collections.abc import Sequence

from bus.keys import Keys
from bus.messages import Job
from bus.redis_transport import RedisTransport, connect, script_source, translated
from bus.settings import RedisSettings


def enqueue_pipelined(
    settings: RedisSettings, jobs: Sequence[Job], *, redo: bool = False, batch: int = 2000
) -> tuple[int, int]:
    """Idempotent enqueue, creating the lanes' consumer groups first (redis-py
    loads the script when Redis lacks it). ``(new, existing)``; raises
    ``BusUnavailable`` when Redis cannot be reached."""
    client = connect(settings)
    keys = Keys(settings.namespace)
    new = 0
    try:
        with translated():
            RedisTransport(client, namespace=settings.namespace).ensure_lanes(sorted({j.lane for j in jobs}))
            script = client.register_script(script_source("enqueue"))
            for i in range(0, len(jobs), batch):
                pipe = client.pipeline(transaction=False)
                for j in jobs[i : i + batch]:
                    keys_ = [keys.state, keys.queue(j.lane), keys.stats, keys.lanes]
                    script(keys=keys_, args=[j.id, j.to_json(), j.lane, "redo" if redo else ""], client=pipe)
                new += sum(int(x) for x in pipe.execute())
    finally:
        client.close()
    return new, len(jobs) - new
