"""Redis key names for one namespace. The layout is documented in
``bus/constants.py`` and ``docs/protocol.md``."""

from __future__ import annotations

from dataclasses import dataclass

from bus import constants as c


@dataclass(frozen=True)
class Keys:
    """Builds every key of one fleet from its namespace."""

    namespace: str = c.DEFAULT_NAMESPACE

    def _k(self, suffix: str) -> str:
        return f"{self.namespace}:{suffix}"

    def queue(self, lane: str) -> str:
        return self._k(c.KEY_QUEUE.format(lane=lane))

    def delayed(self, lane: str) -> str:
        return self._k(c.KEY_DELAYED.format(lane=lane))

    @property
    def state(self) -> str:
        return self._k(c.KEY_STATE)

    @property
    def stats(self) -> str:
        return self._k(c.KEY_STATS)

    @property
    def dead(self) -> str:
        return self._k(c.KEY_DEAD)

    @property
    def errors(self) -> str:
        return self._k(c.KEY_ERRORS)

    @property
    def workers(self) -> str:
        return self._k(c.KEY_WORKERS)

    @property
    def workers_seen(self) -> str:
        return self._k(c.KEY_WORKERS_SEEN)

    @property
    def control(self) -> str:
        return self._k(c.KEY_CONTROL)

    @property
    def events(self) -> str:
        return self._k(c.KEY_EVENTS)

    @property
    def lanes(self) -> str:
        return self._k(c.KEY_LANES)
