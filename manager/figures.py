"""What a run has counted so far, in one place: the planner, the event pump
and the bus watcher write it; the run status and the summary read it.

Each of those holds the same ``RunFigures`` object; none reaches into
another's state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from manager.failures import FailureTally
from manager.throughput import EtaEstimator, Throughput
from manager.tracker import JobTracker


@dataclass
class RunCounters:
    rows: int = 0
    model_calls: int = 0
    """Texts the workers sent to the model (``counts.model_calls`` of job_done)."""
    rows_reused: int = 0
    """Rows whose vector came from the reuse store (docs/reuse.md)."""
    skipped_by_workers: int = 0
    enqueued_new: int = 0
    enqueued_existing: int = 0
    events: int = 0
    job_events: int = 0
    resent_events: int = 0
    """Copies of an already journaled event (same ``eid``), dropped."""
    event_cpu_s: float = 0.0
    embed_cpu_s: float = 0.0
    trimmed: int = 0
    up_to_date: int = 0
    """Outputs the scan found already up to date (no job planned)."""
    scan_errors: list[dict[str, Any]] = field(default_factory=list)
    cluster: dict[str, Any] | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunFigures:
    """The run's figures: per-job state, counters, rates and failures."""

    throughput: Throughput
    tracker: JobTracker = field(default_factory=lambda: JobTracker([]))
    """Replaced by the planner once the run's jobs are known."""
    counters: RunCounters = field(default_factory=RunCounters)
    eta: EtaEstimator = field(default_factory=EtaEstimator)
    failures: FailureTally = field(default_factory=FailureTally)
    """Failures of the run by source (``worker``, ``scan``) and reason class."""

    def skipped(self) -> int:
        """Work not computed: up to date at scan, done before the run, or
        found up to date by a worker."""
        p = self.tracker.progress()
        return self.counters.up_to_date + p.already_done + self.counters.skipped_by_workers
