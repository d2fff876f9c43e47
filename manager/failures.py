"""Failures by reason, with a bounded set of reasons for ``/metrics``.

A dead letter's reason is free text that usually starts with the job's path
(``chains/2024-01/cats/x.parquet: missing column 'text'``); a scan problem
names its file too. ``reason_class`` keeps the first three words after any
path (``missing_column_text``, ``invalid_job_message``,
``not_a_readable``), and ``FailureTally`` keeps at most ``MAX_REASONS``
distinct classes per source, counting the rest as ``other``, so a label can
never explode a time-series database.
"""

from __future__ import annotations

import re
import threading
from collections import defaultdict

MAX_REASONS = 20
"""Distinct reason classes kept per source; later ones count as ``other``."""

_PATH_PREFIX = re.compile(r"^\s*(?:[^\s:]*[/\\][^\s:]*|[^\s:]+\.parquet)\s*:\s*")
_WORD = re.compile(r"[a-z0-9]+")


def reason_class(reason: str | None) -> str:
    """A short, stable name for a failure reason (see the module docstring)."""
    text = reason or ""
    while True:  # "<path>: <path>: problem" happens (a worker repeats the path)
        stripped = _PATH_PREFIX.sub("", text, count=1)
        if stripped == text:
            break
        text = stripped
    head = re.split(r"[:(,;]", text, maxsplit=1)[0]
    words = _WORD.findall(head.lower())[:3]
    return "_".join(words)[:48] or "unknown"


class FailureTally:
    """Counts of failures per (source, reason class). Thread-safe."""

    def __init__(self, max_reasons: int = MAX_REASONS) -> None:
        self.max_reasons = max_reasons
        self._counts: dict[str, dict[str, int]] = defaultdict(dict)
        self._lock = threading.Lock()

    def add(self, source: str, reason: str | None) -> str:
        """Count one failure; returns the class it was counted under."""
        klass = reason_class(reason)
        with self._lock:
            counts = self._counts[source]
            if klass not in counts and len(counts) >= self.max_reasons:
                klass = "other"
            counts[klass] = counts.get(klass, 0) + 1
        return klass

    def as_dict(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {s: dict(sorted(c.items())) for s, c in sorted(self._counts.items())}
