"""How much work is left on a set of lanes, for ``--burst``: entries not yet
delivered, entries pending with any consumer, and retries waiting in the
delayed sets. Read through ``RedisTransport``'s client at the CLI edge; the
worker loop only sees a ``Callable[[list[str]], int]``."""

from __future__ import annotations

from collections.abc import Callable

from bus.lanes import backlog
from bus.redis_transport import RedisTransport, translated


def lanes_backlog(t: RedisTransport) -> Callable[[list[str]], int]:
    """A function counting the outstanding jobs of some lanes (``bus.lanes``)."""

    def count(lanes: list[str]) -> int:
        with translated(t.location):
            return backlog(t.r, t.keys, lanes)

    return count
