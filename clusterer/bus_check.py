"""Ask the job bus whether embedding jobs are still outstanding.

Reads only the run counters (``<ns>:stats``), an O(1) look-up however many
jobs the run has: ``queued`` counts jobs waiting, running or delayed for a
retry; ``dead`` counts dead-lettered ones.
"""

from __future__ import annotations

from bus.errors import BusUnavailable
from bus.keys import Keys
from bus.redis_transport import connect, translated
from bus.settings import RedisSettings


def outstanding_jobs(redis_url: str, namespace: str | None = None) -> tuple[int, int]:
    """``(queued, dead)`` job counts of the run on this bus."""
    settings = RedisSettings.from_url(redis_url, namespace=namespace)
    client = connect(settings, timeout_s=10.0)
    try:
        with translated():
            stats = client.hmget(Keys(settings.namespace).stats, ["queued", "dead"])
    except BusUnavailable as e:
        raise BusUnavailable(f"{e} at {settings.redacted()}") from None
    finally:
        client.close()
    queued, dead = (int(v or 0) for v in stats)
    return max(queued, 0), max(dead, 0)
