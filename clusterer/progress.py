"""Progress lines for every long step of a clustering run.

Plain timestamped lines on stderr rather than a redrawn bar: the clusterer
often runs inside an RQ worker or under ``nohup``, where a bar turns into
noise. Counters report at most every ``every_s`` seconds.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO


class Progress:
    """Announces steps and their durations; counts work inside a step."""

    def __init__(
        self,
        stream: TextIO | None = None,
        every_s: float = 2.0,
        quiet: bool = False,
        sink: Callable[[str], None] | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.sink = sink
        self.every_s = every_s
        self.quiet = quiet
        self.timings: dict[str, float] = {}
        self._t0 = time.monotonic()
        self._last = 0.0

    def say(self, message: str) -> None:
        """One progress line (also handed to the sink, e.g. an RQ job's meta)."""
        line = f"[cluster {time.monotonic() - self._t0:7.1f}s] {message}"
        if not self.quiet:
            print(line, file=self.stream, flush=True)
        if self.sink is not None:
            self.sink(line)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time a named step; its duration lands in ``timings``."""
        self.say(f"{name} ...")
        t = time.monotonic()
        self._last = t
        yield
        took = time.monotonic() - t
        self.timings[name] = round(self.timings.get(name, 0.0) + took, 3)
        self.say(f"{name} done in {took:.1f} s")

    def count(self, what: str, done: int, total: int, force: bool = False) -> None:
        """Report ``done`` of ``total`` if a report is due (or forced)."""
        now = time.monotonic()
        if not force and now - self._last < self.every_s:
            return
        self._last = now
        share = f" ({100.0 * done / total:.0f}%)" if total else ""
        self.say(f"  {what}: {done:,}/{total:,}{share}")
