"""What a lane holds: entries waiting for a worker, entries in flight (pending
with a consumer) and retries waiting out their backoff. The status API's lane
table reads ``lane_counts``; a burst worker's "anything left?" is
``backlog``, one script read at one instant (the Rust worker's twin,
``RedisBus::backlog``, runs the same ``bus/lua/backlog.lua``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from bus import constants as c
from bus.keys import Keys
from bus.redis_transport import script_source
from bus.replies import as_text

_COUNT_CHUNK = 1000


@dataclass(frozen=True)
class LaneCounts:
    lane: str
    waiting: int
    """Entries not yet delivered to any worker."""
    in_flight: int
    """Entries delivered and not yet acknowledged (the group's pending list)."""
    delayed: int
    """Retries waiting out their backoff in the lane's delayed set."""

    @property
    def outstanding(self) -> int:
        """Jobs the lane still owes work for."""
        return self.waiting + self.in_flight + self.delayed


def lane_counts(client: redis.Redis, keys: Keys, lane: str) -> LaneCounts:
    """The counts of one lane (callers translate errors: ``translated()``)."""
    in_flight, waiting = _group_counts(client, keys.queue(lane))
    return LaneCounts(lane, waiting, in_flight, int(client.zcard(keys.delayed(lane))))


def backlog(client: redis.Redis, keys: Keys, lanes: list[str]) -> int:
    """Jobs outstanding on some lanes (``--burst`` exits at 0), read at one
    instant by ``bus/lua/backlog.lua``: counted lane by lane, a job moving
    between a lane's pending list, its delayed set and its stream could be
    missed, and a burst worker leave work behind."""
    if not lanes:
        return 0
    global _BACKLOG
    if _BACKLOG is None:
        _BACKLOG = client.register_script(script_source("backlog"))
    lane_keys = [k for lane in lanes for k in (keys.queue(lane), keys.delayed(lane))]
    return int(_BACKLOG(keys=lane_keys, args=[c.GROUP], client=client))


_BACKLOG: Any = None
"""``backlog.lua`` as a redis-py Script (EVALSHA, loading the script on a
server that lacks it); each call passes its own client."""


def _group_counts(client: redis.Redis, stream: str) -> tuple[int, int]:
    """(in flight, waiting) of the workers' group on one lane's stream.

    Redis 7 reports the waiting entries as the group's ``lag``; Redis 6.2
    (the embedded one) has no lag, and 7 gives none when it cannot tell.
    Then waiting = stream length - entries up to the last delivered id."""
    try:
        groups = client.xinfo_groups(stream)
    except redis.exceptions.ResponseError:
        return 0, 0  # stream not created yet
    for g in groups:
        if as_text(g["name"]) != c.GROUP:
            continue
        pending = int(g.get("pending") or 0)
        lag = g.get("lag")
        if lag is not None:
            return pending, int(lag)
        last = as_text(g.get("last-delivered-id"), "0-0")
        return pending, max(0, int(client.xlen(stream)) - _count_up_to(client, stream, last))
    return 0, int(client.xlen(stream))


def _count_up_to(client: redis.Redis, stream: str, last_id: str) -> int:
    """Entries of ``stream`` with ids up to ``last_id`` (kept few by trimming)."""
    if last_id == "0-0":
        return 0
    n, start = 0, "-"
    while True:
        entries: list[Any] = client.xrange(stream, start, last_id, count=_COUNT_CHUNK)  # type: ignore[assignment]
        n += len(entries)
        if len(entries) < _COUNT_CHUNK:
            return n
        start = "(" + as_text(entries[-1][0])
