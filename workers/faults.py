# Twin: rust/worker/src/faults.rs (docs/parity.md)
"""Fault hooks for the fault-injection harness (``tests/fault``); inert unless set.

- ``EMBEDFLEET_FAULT_POINT``: ``after_tmp_write``, ``after_rename`` or
  ``before_ack`` (a comma list may name several): the worker SIGKILLs itself
  there, the ``EMBEDFLEET_FAULT_EVERY``-th time it reaches it (default 1), or
  with probability ``EMBEDFLEET_FAULT_PROBABILITY`` each time when that is set.
- ``EMBEDFLEET_FAULT_CRASH_PATH``: SIGKILL whenever a job whose path contains
  this substring starts running (a poison job).

The Rust worker reads the same variables (``rust/worker/src/faults.rs``).
"""

from __future__ import annotations

import os
import random
import signal
from collections import Counter

POINTS = frozenset(p for p in os.environ.get("EMBEDFLEET_FAULT_POINT", "").split(",") if p)
EVERY = max(1, int(os.environ.get("EMBEDFLEET_FAULT_EVERY") or 1))
PROBABILITY = float(os.environ.get("EMBEDFLEET_FAULT_PROBABILITY") or 0)
CRASH_PATH = os.environ.get("EMBEDFLEET_FAULT_CRASH_PATH", "")
_reached: Counter[str] = Counter()


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def reach(point: str) -> None:
    """Called at each named point; kills the process when told to."""
    if point not in POINTS:
        return
    _reached[point] += 1
    if (random.random() < PROBABILITY) if PROBABILITY > 0 else (_reached[point] % EVERY == 0):
        _die()


def job_started(path: str) -> None:
    """Called when a job starts running; kills the process on a poison path."""
    if CRASH_PATH and CRASH_PATH in path:
        _die()
