"""How much work is left on a set of lanes, for ``--burst``: entries not yet
delivered, entries pending with any consumer, and retries waiting in the
delayed sets. Read through ``RedisTransport``'s client at the CLI edge; the
worker loop only sees a ``Callable[[list[str]], int]``."""

from __future__ import annotations

from collections.abc import Callable

from bus import constants as c
from bus.redis_transport import RedisTransport, translated


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def redis_backlog(t: RedisTransport) -> Callable[[list[str]], int]:
    """A function counting the outstanding jobs of some lanes."""

    def count(lanes: list[str]) -> int:
        total = 0
        with translated(t.location):
            for lane in lanes:
                queue = t.keys.queue(lane)
                total += int(t.r.zcard(t.keys.delayed(lane)))
                for g in t.r.xinfo_groups(queue):
                    if _text(g["name"]) != c.GROUP:
                        continue
                    total += int(g["pending"])
                    last = _text(g["last-delivered-id"])
                    total += len(t.r.xrange(queue, min=f"({last}", max="+", count=1) or [])
        return total

    return count
