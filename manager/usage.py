"""CPU and memory usage, per stage and per job.

Per stage: the manager samples its own process (CPU seconds, user plus
system, of itself and its reaped children; resident memory) when a stage
starts and ends, and journals the delta with the stage's wall time.

Per job: the work happens on the workers, so the job's figures come from the
worker's event: ``seconds`` (wall) always, and ``cpu_s`` / ``rss_bytes`` /
``max_rss_bytes`` when the worker reports them (top level or under
``usage``). The manager adds its own bookkeeping CPU time for the job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import psutil

_JOB_FIELDS = ("cpu_s", "rss_bytes", "max_rss_bytes", "gpu_mem_bytes")


@dataclass(frozen=True)
class UsageSample:
    """One reading of this process."""

    wall_s: float
    cpu_s: float
    rss_bytes: int


@dataclass
class UsageMeter:
    """Reads CPU and memory of one process (this one by default)."""

    process: psutil.Process = field(default_factory=psutil.Process)
    peak_rss_bytes: int = 0

    def sample(self) -> UsageSample:
        t = self.process.cpu_times()
        cpu = t.user + t.system + getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0)
        rss = int(self.process.memory_info().rss)
        self.peak_rss_bytes = max(self.peak_rss_bytes, rss)
        return UsageSample(time.monotonic(), cpu, rss)


def delta(start: UsageSample, end: UsageSample) -> dict[str, float | int]:
    """Usage between two samples, as journaled."""
    return {
        "wall_s": round(end.wall_s - start.wall_s, 4),
        "cpu_s": round(end.cpu_s - start.cpu_s, 4),
        "rss_bytes": end.rss_bytes,
        "rss_delta_bytes": end.rss_bytes - start.rss_bytes,
    }


def job_usage(event: dict[str, Any], bookkeeping_s: float | None = None) -> dict[str, float | int]:
    """Usage of one job from a worker event (plus the manager's own cost)."""
    raw = event.get("usage")
    nested: dict[str, Any] = raw if isinstance(raw, dict) else {}
    out: dict[str, float | int] = {}
    seconds = event.get("seconds")
    if isinstance(seconds, int | float):
        out["wall_s"] = round(float(seconds), 4)
    for name in _JOB_FIELDS:
        value = event.get(name, nested.get(name))
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = value
    if bookkeeping_s is not None:
        out["manager_cpu_s"] = round(bookkeeping_s, 6)
    return out


@dataclass
class StageUsage:
    """Usage per stage, kept for ``state.json`` and the summary."""

    meter: UsageMeter = field(default_factory=UsageMeter)
    stages: dict[str, dict[str, float | int]] = field(default_factory=dict)
    _open: tuple[str, UsageSample] | None = None

    def start(self, stage: str) -> None:
        self._open = (stage, self.meter.sample())

    def finish(self) -> dict[str, float | int]:
        """Close the open stage; returns its usage (empty when none was open)."""
        if self._open is None:
            return {}
        stage, begin = self._open
        self._open = None
        used = delta(begin, self.meter.sample())
        used["peak_rss_bytes"] = self.meter.peak_rss_bytes
        self.stages[stage] = used
        return used
