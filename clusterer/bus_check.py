"""Ask the job bus whether embedding jobs are still outstanding, and why failed ones failed.

The run counters (``<ns>:stats``) are an O(1) look-up however many jobs the
run has: ``queued`` counts jobs waiting, running or delayed for a retry;
``dead`` counts dead-lettered ones. The reasons come from the newest
``MAX_DEAD_LETTERS`` entries of the dead-letter stream, by input path, so a
partial run's report can say why an input is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bus import constants as c
from bus.errors import BusUnavailable
from bus.keys import Keys
from bus.messages import Job
from bus.redis_transport import connect, translated
from bus.settings import RedisSettings

MAX_DEAD_LETTERS = 1_000
"""Dead letters read for their reasons (newest first)."""


@dataclass
class BusState:
    """Outstanding and dead-lettered jobs of the run on a bus."""

    queued: int
    dead: int
    reasons: dict[str, str] = field(default_factory=dict)
    """Input path -> the reason of its newest dead letter."""


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def dead_reasons(entries: list[Any]) -> dict[str, str]:
    """Input path -> reason from dead-letter stream entries, newest first (the newest wins)."""
    out: dict[str, str] = {}
    for _eid, fields in entries:
        f = {_text(k): _text(v) for k, v in fields.items()}
        try:
            path = Job.from_json(f.get(c.JOB_FIELD, "")).path
        except Exception:  # an unreadable message was dead-lettered as is: no path to name
            continue
        out.setdefault(path, f.get("reason", "unknown (no reason recorded)"))
    return out


def outstanding_jobs(redis_url: str, namespace: str | None = None) -> BusState:
    """Queued and dead job counts of the run on this bus, with dead letters' reasons."""
    settings = RedisSettings.from_url(redis_url, namespace=namespace)
    client = connect(settings, timeout_s=10.0)
    keys = Keys(settings.namespace)
    try:
        with translated():
            stats = client.hmget(keys.stats, ["queued", "dead"])
            entries: Any = client.xrevrange(keys.dead, count=MAX_DEAD_LETTERS)
    except BusUnavailable as e:
        raise BusUnavailable(f"{e} at {settings.redacted()}") from None
    finally:
        client.close()
    queued, dead = (int(v or 0) for v in stats)
    return BusState(max(queued, 0), max(dead, 0), dead_reasons(entries))
