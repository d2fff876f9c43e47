"""Throughput over time, per worker and per device class, and the run's ETA.

Rows come from the workers' ``job_done`` events. Each is counted in a time
bucket (5 s by default) under its worker and under its class
``<kind>/<device>`` (e.g. ``python/mps``, ``rust/cpu``), so the dashboard can
draw rows per second over time for both. Rates over the last window give the
current speed; the ETA divides the jobs left by the recent job rate.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, defaultdict, deque
from dataclasses import dataclass, field
from typing import Any


def device_class(kind: str | None, device: str | None) -> str:
    return f"{kind or '?'}/{device or '?'}"


@dataclass
class Throughput:
    """Bucketed rows per worker and per device class. Thread-safe."""

    bucket_s: float = 5.0
    keep: int = 720
    _buckets: OrderedDict[int, dict[str, dict[str, int]]] = field(default_factory=OrderedDict)
    _totals: dict[str, dict[str, int]] = field(
        default_factory=lambda: {"workers": defaultdict(int), "classes": defaultdict(int)}
    )
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, worker: str, klass: str, rows: int, ts_s: float | None = None) -> None:
        b = int((ts_s if ts_s is not None else time.time()) // self.bucket_s)
        with self._lock:
            bucket = self._buckets.get(b)
            if bucket is None:
                bucket = self._buckets[b] = {"workers": defaultdict(int), "classes": defaultdict(int)}
                while len(self._buckets) > self.keep:
                    self._buckets.popitem(last=False)
            bucket["workers"][worker] += rows
            bucket["classes"][klass] += rows
            self._totals["workers"][worker] += rows
            self._totals["classes"][klass] += rows

    def rates(self, window_s: float = 30.0, now_s: float | None = None) -> dict[str, dict[str, float]]:
        """Rows per second over the last ``window_s`` (or since the first
        rows, when that is more recent), per worker and class."""
        now = now_s if now_s is not None else time.time()
        first = int((now - window_s) // self.bucket_s)
        out: dict[str, dict[str, float]] = {"workers": defaultdict(float), "classes": defaultdict(float)}
        with self._lock:
            recent = [(b, bucket) for b, bucket in self._buckets.items() if b >= first]
            if not recent:
                return {"workers": {}, "classes": {}}
            span = max(self.bucket_s, min(window_s, now - recent[0][0] * self.bucket_s))
            for _, bucket in recent:
                for group in ("workers", "classes"):
                    for name, rows in bucket[group].items():
                        out[group][name] += rows / span
        return {g: {k: round(v, 2) for k, v in d.items()} for g, d in out.items()}

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
                        round(self._buckets[i][g].get(n, 0) / self.bucket_s, 2) if i in self._buckets else 0.0
                        for i in idx
                    ]
                    for n in names[g]
                }
                for g in ("workers", "classes")
            }
            totals = {g: dict(self._totals[g]) for g in ("workers", "classes")}
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
