"""The small interface worker logic talks to. ``RedisTransport`` is the real
bus; ``MemoryTransport`` is an in-memory fake for unit tests of worker logic.
Worker code never imports ``redis``."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol

from bus.messages import Job


@dataclass(frozen=True)
class Delivery:
    """A job handed to one consumer: where it came from and how often."""

    job: Job
    lane: str
    entry_id: str
    deliveries: int = 1

    @property
    def attempts(self) -> int:
        """Attempts so far, this one included: retries plus re-deliveries."""
        return self.job.attempt - 1 + self.deliveries


class Outcome(enum.Enum):
    """What a state-changing call did."""

    DONE = 1
    """Applied and counted."""
    DUPLICATE = 2
    """Acknowledged, but the job was already done: not counted again."""
    LEASE_LOST = 0
    """Another consumer owns the entry now: nothing changed."""


@dataclass
class Controls:
    """Fleet controls read from Redis."""

    paused: bool = False
    drain: bool = False


@dataclass
class WorkerRecord:
    """What a worker tells the registry about itself on every heartbeat."""

    worker_id: str
    host: str
    pid: int
    kind: str
    device: str
    version: str
    lanes: list[str]
    state: str = "idle"
    current_job: str | None = None
    rows_done: int = 0
    jobs_done: int = 0
    rows_per_s: float = 0.0
    started_ms: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "host": self.host,
            "pid": self.pid,
            "kind": self.kind,
            "device": self.device,
            "version": self.version,
            "lanes": self.lanes,
            "state": self.state,
            "current_job": self.current_job,
            "rows_done": self.rows_done,
            "jobs_done": self.jobs_done,
            "rows_per_s": round(self.rows_per_s, 2),
            "started_ms": self.started_ms,
            **self.extra,
        }


class Transport(Protocol):
    """Everything a worker needs from the bus."""

    def ensure_lanes(self, lanes: list[str]) -> None:
        """Create the lanes' streams and consumer groups if missing."""

    def claim(self, consumer: str, lanes: list[str], block_ms: int) -> Delivery | None:
        """Take a job: first one whose lease expired, else a new one. Blocks
        at most ``block_ms``; ``None`` when there is nothing to do."""

    def renew(self, consumer: str, d: Delivery) -> bool:
        """Extend the lease; ``False`` when another consumer owns it now."""

    def complete(
        self, consumer: str, d: Delivery, rows: int, skipped: bool = False, model_calls: int = 0, rows_reused: int = 0
    ) -> Outcome:
        """Acknowledge and count a finished job, if still owned (rows, texts
        sent to the model and rows taken from the reuse store)."""

    def retry(self, consumer: str, d: Delivery, reason: str, delay_ms: int) -> Outcome:
        """Give the job back for a later attempt after ``delay_ms``."""

    def dead_letter(self, consumer: str, d: Delivery, reason: str, worker_id: str) -> Outcome:
        """Move the job to the dead-letter stream with its reason."""

    def heartbeat(self, record: WorkerRecord) -> int:
        """Refresh the registry record; returns the bus's clock in ms."""

    def deregister(self, worker_id: str) -> None:
        """Remove a worker from the registry (clean exit)."""

    def controls(self) -> Controls:
        """Read pause and drain."""

    def publish_event(self, event: dict[str, Any]) -> None:
        """Send an event to the manager's journal (capped stream)."""

    def last_error(self, job_id: str) -> str | None:
        """The last failure reason recorded for a job, if any."""
