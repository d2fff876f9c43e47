"""The manager's own disk, treated like Redis: an outage it reports, waits out
and recovers from.

Everything the manager writes (``events.jsonl``, ``state.json``,
``summary.json``, ``scan_report.json``) goes through one ``DiskGuard``. A
write that fails because the disk is full or failing (``ENOSPC``, ``EDQUOT``,
``EIO``, ``EROFS``) is retried with backoff (0.25 s doubling to 10 s) for up
to ``timeout_s``; the outage is logged once when it starts and once when it
ends. Meanwhile the run does nothing else: the workers' events wait in
Redis's events stream, and the journal takes them up where it stopped, so no
event is lost or written twice (a line cut short by a full disk is cut off
again before the next try, see ``manager.journal``).

An outage longer than ``timeout_s``, or one met while the run is being
stopped, raises ``DiskUnavailable``: the run ends in ``error`` (exit 2), and
from then on every write is tried once only.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger("embedfleet.manager")
T = TypeVar("T")

OUTAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS})
"""What a full or failing disk answers; any other ``OSError`` is a bug or a
bad path and is raised at once."""
BACKOFF_FIRST_S = 0.25
BACKOFF_MAX_S = 10.0


class DiskUnavailable(Exception):
    """The manager could not write its files for longer than it waits."""


def is_outage(e: BaseException) -> bool:
    """Whether ``e`` says the disk is full or failing."""
    return isinstance(e, OSError) and e.errno in OUTAGE_ERRNOS


@dataclass(frozen=True)
class Outage:
    """One outage, over: what failed first and how long it lasted."""

    what: str
    error: str
    seconds: float


class DiskGuard:
    """Runs the manager's writes, waiting out a full or failing disk. Thread-safe."""

    def __init__(
        self,
        timeout_s: float = 300.0,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout_s = timeout_s
        self.stop = stop or threading.Event()
        self.clock = clock
        self.given_up = False
        """Set once an outage outlasted ``timeout_s``: later writes are tried once."""
        self._lock = threading.Lock()
        self._since: float | None = None
        self._first: tuple[str, str] | None = None
        self._ended: list[Outage] = []

    @property
    def failing(self) -> bool:
        """Whether the last write failed (an outage is going on)."""
        return self._since is not None

    def call(self, fn: Callable[[], T], what: str) -> T:
        """``fn()``, retried while the disk is full or failing; ``what`` names
        the file in the messages."""
        delay = BACKOFF_FIRST_S
        while True:
            try:
                result = fn()
            except OSError as e:
                if not is_outage(e):
                    raise
                self._failed(what, e)
                if self.given_up or self.stop.is_set():
                    raise DiskUnavailable(f"cannot write {what}: {e.strerror or e}") from None
                if self.clock() - (self._since or 0.0) > self.timeout_s:
                    self.given_up = True
                    raise DiskUnavailable(
                        f"cannot write {what} for more than {self.timeout_s:.0f} s: {e.strerror or e}"
                    ) from None
                self.stop.wait(delay)
                delay = min(BACKOFF_MAX_S, delay * 2)
                continue
            self._succeeded()
            return result

    def _failed(self, what: str, e: OSError) -> None:
        with self._lock:
            if self._since is None:
                self._since, self._first = self.clock(), (what, f"{e.strerror or e} (errno {e.errno})")
                log.warning(
                    "cannot write %s: %s; waiting for the disk (up to %.0f s, backoff %.2f s doubling to %.0f s); "
                    "workers' events wait in Redis",
                    what,
                    self._first[1],
                    self.timeout_s,
                    BACKOFF_FIRST_S,
                    BACKOFF_MAX_S,
                )

    def _succeeded(self) -> None:
        if self._since is None:
            return
        with self._lock:
            if self._since is None or self._first is None:
                return
            outage = Outage(self._first[0], self._first[1], round(self.clock() - self._since, 2))
            self._since, self._first = None, None
            self._ended.append(outage)
        log.warning("disk writable again after %.1f s (%s failed first)", outage.seconds, outage.what)

    def take_ended(self) -> list[Outage]:
        """Outages that ended since the last call (for the journal)."""
        with self._lock:
            ended, self._ended = self._ended, []
        return ended
