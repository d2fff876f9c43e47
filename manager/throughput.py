"""Throughput per worker and per device class, over time, and the run's ETA.

Every figure comes from the workers' ``job_done`` events (``rows`` and
``seconds``, the time the worker held the job), kept in one ``Throughput``
that the status, the summary, the dashboard and ``/metrics`` all read:

- **rows per busy second** per worker and per class ``<kind>/<device>``
  (``python/mps``, ``rust/cpu``): rows ÷ the seconds its workers held jobs.
  This is how fast a worker of that class embeds while it works, not
  diluted by start-up, idle time or clustering. With two workers of one
  class, both their rows and both their busy seconds add up, so it stays
  the speed of one worker of the class.
- **the series over time** (``series()``, the dashboard's charts): each job's
  rows are spread evenly over the seconds it ran and added to the time
  buckets (5 s) it overlapped, so a bucket holds the rows actually worked on
  in it, not the jobs that happened to finish in it.
- **the fleet's current speed** (``current_rate()``, "rows/s now"): the sum,
  over workers that finished a job recently, of each one's rows per busy
  second over its jobs of the last minute.
- **job durations** (``histogram()``): a cumulative histogram of ``seconds``
  per class, for ``/metrics``.

The ETA divides the jobs left by the recent job rate (``EtaEstimator``).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

DURATION_BUCKETS_S = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
"""Upper bounds of the job-duration histogram (seconds; +Inf is implied)."""

RECENT_S = 60.0
"""A worker's current speed is measured over its jobs that ended this recently."""


def device_class(kind: str | None, device: str | None) -> str:
    return f"{kind or '?'}/{device or '?'}"


@dataclass
class _Tally:
    """Rows and busy seconds of one worker or class."""

    rows: int = 0
    busy_s: float = 0.0
    jobs: int = 0

    def rate(self) -> float:
        return round(self.rows / self.busy_s, 2) if self.busy_s > 0 else 0.0


@dataclass
class _Recent:
    """One worker's last jobs: (end time, rows, seconds)."""

    jobs: deque[tuple[float, int, float]] = field(default_factory=deque)

    def add(self, end_s: float, rows: int, seconds: float) -> None:
        self.jobs.append((end_s, rows, seconds))
        while len(self.jobs) > 1 and end_s - self.jobs[0][0] > RECENT_S:
            self.jobs.popleft()

    def speed(self, now_s: float) -> float:
        """Rows per busy second over the recent jobs; 0 once the worker has
        finished nothing for longer than its last job took (twice) and 30 s."""
        if not self.jobs:
            return 0.0
        end, _, last_s = self.jobs[-1]
        if now_s - end > max(30.0, 2 * last_s):
            return 0.0
        recent = [j for j in self.jobs if now_s - j[0] <= RECENT_S] or [self.jobs[-1]]
        busy = sum(s for _, _, s in recent)
        return sum(r for _, r, _ in recent) / busy if busy > 0 else 0.0


@dataclass
class Throughput:
    """Rows per worker and per class: totals, busy time, series. Thread-safe."""

    bucket_s: float = 5.0
    keep: int = 720
    _buckets: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)
    _tallies: dict[str, dict[str, _Tally]] = field(
        default_factory=lambda: {"workers": defaultdict(_Tally), "classes": defaultdict(_Tally)}
    )
    _recent: dict[str, _Recent] = field(default_factory=lambda: defaultdict(_Recent))
    _durations: dict[str, list[int]] = field(default_factory=dict)
    _duration_sum: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, worker: str, klass: str, rows: int, seconds: float | None = None, end_s: float | None = None) -> None:
        """One finished job: ``rows`` embedded in ``seconds`` (the time the
        worker held it), ending at ``end_s`` (epoch seconds, default now)."""
        end = end_s if end_s is not None else time.time()
        secs = max(0.0, float(seconds)) if seconds is not None else 0.0
        with self._lock:
            for group, name in (("workers", worker), ("classes", klass)):
                tally = self._tallies[group][name]
                tally.rows += rows
                tally.busy_s += secs
                tally.jobs += 1
            self._recent[worker].add(end, rows, secs)
            if seconds is not None:
                counts = self._durations.setdefault(klass, [0] * (len(DURATION_BUCKETS_S) + 1))
                counts[next((i for i, b in enumerate(DURATION_BUCKETS_S) if secs <= b), len(DURATION_BUCKETS_S))] += 1
                self._duration_sum[klass] += secs
            self._spread(worker, klass, rows, end - secs, end)

    def _spread(self, worker: str, klass: str, rows: int, start: float, end: float) -> None:
        """Add ``rows`` to the buckets over [start, end], in proportion to overlap."""
        first, last = int(start // self.bucket_s), int(end // self.bucket_s)
        first = max(first, last - self.keep + 1)  # older than the series keeps
        span = end - start
        for b in range(first, last + 1):
            if span > 0:
                lo, hi = max(start, b * self.bucket_s), min(end, (b + 1) * self.bucket_s)
                share = rows * max(0.0, hi - lo) / span
            else:
                share = float(rows)
            bucket = self._buckets.setdefault(b, {"workers": defaultdict(float), "classes": defaultdict(float)})
            bucket["workers"][worker] += share
            bucket["classes"][klass] += share
        while len(self._buckets) > self.keep:
            del self._buckets[min(self._buckets)]

    def busy_rates(self) -> dict[str, dict[str, float]]:
        """Rows per busy second, per worker and per class (the summary's figures)."""
        with self._lock:
            return {g: {n: t.rate() for n, t in sorted(d.items())} for g, d in self._tallies.items()}

    def totals(self) -> dict[str, dict[str, dict[str, float]]]:
        """Rows, busy seconds and jobs per worker and per class."""
        with self._lock:
            return {
                g: {n: {"rows": t.rows, "busy_s": round(t.busy_s, 3), "jobs": t.jobs} for n, t in sorted(d.items())}
                for g, d in self._tallies.items()
            }

    def current_rate(self, now_s: float | None = None) -> float:
        """The fleet's speed now: sum of the recently working workers' speeds."""
        now = now_s if now_s is not None else time.time()
        with self._lock:
            return round(sum(r.speed(now) for r in self._recent.values()), 2)

    def histogram(self) -> dict[str, Any]:
        """Job durations per class: bucket bounds, counts per bucket, sums."""
        with self._lock:
            return {
                "le": list(DURATION_BUCKETS_S),
                "counts": {k: list(v) for k, v in sorted(self._durations.items())},
                "sum_s": {k: round(v, 3) for k, v in sorted(self._duration_sum.items())},
            }

    def series(self, now_s: float | None = None, points: int = 120) -> dict[str, Any]:
        """Rows per second in each of the last ``points`` buckets (oldest first)."""
        now = now_s if now_s is not None else time.time()
        last = int(now // self.bucket_s)
        idx = list(range(last - points + 1, last + 1))
        with self._lock:
            names = {g: sorted({n for b in self._buckets.values() for n in b[g]}) for g in ("workers", "classes")}
            data = {
                g: {
                    n: [
                        round(self._buckets[i][g].get(n, 0.0) / self.bucket_s, 2) if i in self._buckets else 0.0
                        for i in idx
                    ]
                    for n in names[g]
                }
                for g in ("workers", "classes")
            }
            totals = {g: {n: t.rows for n, t in d.items()} for g, d in self._tallies.items()}
        return {"bucket_s": self.bucket_s, "t": [i * self.bucket_s for i in idx], **data, "totals": totals}


@dataclass
class EtaEstimator:
    """Jobs-left over recent job rate (completions in a sliding window)."""

    window_s: float = 120.0
    _done: deque[tuple[float, int]] = field(default_factory=deque)

    def observe(self, resolved: int, now: float | None = None) -> None:
        t = now if now is not None else time.monotonic()
        self._done.append((t, resolved))
        while len(self._done) > 2 and t - self._done[0][0] > self.window_s:
            self._done.popleft()

    def jobs_per_s(self) -> float:
        if len(self._done) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self._done[0], self._done[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def eta_s(self, remaining: int) -> float | None:
        if remaining <= 0:
            return 0.0
        rate = self.jobs_per_s()
        return round(remaining / rate, 1) if rate > 0 else None
