"""An in-memory ``Transport`` with the same semantics as the Redis scripts,
for unit tests of worker logic that need no server. The bus itself is always
tested against a real Redis (``tests/test_bus_vectors.py``), and this fake
runs the same ``scenarios.json`` (``tests/test_bus_memory_scenarios.py``)."""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from bus import constants as c
from bus.messages import Job, with_event_id
from bus.transport import Controls, Delivery, Outcome, WorkerRecord


@dataclass
class _Pending:
    consumer: str
    since: float
    deliveries: int


@dataclass
class MemoryTransport:
    """Streams, pending lists and counters held in dicts, behind one lock."""

    lease_ms: int = c.DEFAULT_LEASE_MS
    state: dict[str, str] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)
    dead: list[dict[str, Any]] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    workers: dict[str, dict[str, Any]] = field(default_factory=dict)
    control: Controls = field(default_factory=Controls)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._entries: dict[str, dict[str, Job]] = {}
        self._pending: dict[str, dict[str, _Pending]] = {}
        self._delayed: list[tuple[float, Job]] = []

    def _inc(self, name: str, by: int = 1) -> None:
        self.stats[name] = self.stats.get(name, 0) + by

    def _owned(self, consumer: str, d: Delivery) -> bool:
        p = self._pending.get(d.lane, {}).get(d.entry_id)
        return p is not None and p.consumer == consumer

    def _ack(self, d: Delivery) -> None:
        self._pending[d.lane].pop(d.entry_id, None)
        self._entries[d.lane].pop(d.entry_id, None)

    def _add(self, job: Job) -> None:
        self._entries.setdefault(job.lane, {})[f"{next(self._ids)}-0"] = job
        self._pending.setdefault(job.lane, {})

    def enqueue(self, job: Job, redo: bool = False) -> bool:
        with self._lock:
            s = self.state.get(job.id)
            if s in (c.STATE_QUEUED, c.STATE_DEAD) or (s == c.STATE_DONE and not redo):
                return False
            self.state[job.id] = c.STATE_QUEUED
            self._add(job)
            self._inc("enqueued")
            self._inc("queued")
            return True

    def ensure_lanes(self, lanes: list[str]) -> None:
        with self._lock:
            for lane in lanes:
                self._entries.setdefault(lane, {})
                self._pending.setdefault(lane, {})

    def claim(self, consumer: str, lanes: list[str], block_ms: int) -> Delivery | None:
        deadline = time.monotonic() + block_ms / 1000
        while True:
            with self._lock:
                d = self._take(consumer, lanes)
            if d is not None or time.monotonic() >= deadline:
                return d
            time.sleep(0.005)

    def _take(self, consumer: str, lanes: list[str]) -> Delivery | None:
        now = time.monotonic()
        for due, job in [x for x in self._delayed if x[0] <= now]:
            self._delayed.remove((due, job))
            self._add(job)
        for lane in lanes:
            for eid, p in self._pending.get(lane, {}).items():
                if (now - p.since) * 1000 >= self.lease_ms:
                    p.consumer, p.since, p.deliveries = consumer, now, p.deliveries + 1
                    return Delivery(self._entries[lane][eid], lane, eid, p.deliveries)
            for eid, job in self._entries.get(lane, {}).items():
                if eid not in self._pending[lane]:
                    self._pending[lane][eid] = _Pending(consumer, now, 1)
                    return Delivery(job, lane, eid, 1)
        return None

    def renew(self, consumer: str, d: Delivery) -> bool:
        with self._lock:
            if not self._owned(consumer, d):
                return False
            self._pending[d.lane][d.entry_id].since = time.monotonic()
            return True

    def complete(
        self, consumer: str, d: Delivery, rows: int, skipped: bool = False, model_calls: int = 0, rows_reused: int = 0
    ) -> Outcome:
        with self._lock:
            if not self._owned(consumer, d):
                self._inc("lost_lease")
                return Outcome.LEASE_LOST
            self._ack(d)
            s = self.state.get(d.job.id)
            if s == c.STATE_DONE:
                self._inc("duplicates")
                return Outcome.DUPLICATE
            self.state[d.job.id] = c.STATE_DONE
            self.errors.pop(d.job.id, None)
            self._inc("done")
            if s == c.STATE_QUEUED:
                self._inc("queued", -1)
            self._inc("rows", rows)
            self._inc("model_calls", model_calls)
            self._inc("rows_reused", rows_reused)
            if skipped:
                self._inc("skipped_existing")
            return Outcome.DONE

    def retry(self, consumer: str, d: Delivery, reason: str, delay_ms: int) -> Outcome:
        with self._lock:
            if not self._owned(consumer, d):
                return Outcome.LEASE_LOST
            self._ack(d)
            nxt = Job(**{**d.job.__dict__, "attempt": d.attempts + 1})
            self._delayed.append((time.monotonic() + delay_ms / 1000, nxt))
            self.errors[d.job.id] = reason
            self._inc("retried")
            return Outcome.DONE

    def dead_letter(self, consumer: str, d: Delivery, reason: str, worker_id: str) -> Outcome:
        with self._lock:
            if not self._owned(consumer, d):
                return Outcome.LEASE_LOST
            self._ack(d)
            s = self.state.get(d.job.id)
            if s in (c.STATE_DONE, c.STATE_DEAD):
                return Outcome.DUPLICATE
            self.state[d.job.id] = c.STATE_DEAD
            self.errors[d.job.id] = reason
            self.dead.append({"job": d.job, "reason": reason, "attempts": d.attempts, "worker": worker_id})
            self._inc("dead")
            if s == c.STATE_QUEUED:
                self._inc("queued", -1)
            return Outcome.DONE

    def heartbeat(self, record: WorkerRecord) -> int:
        with self._lock:
            self.workers[record.worker_id] = record.to_dict()
            return int(time.time() * 1000)

    def deregister(self, worker_id: str) -> None:
        with self._lock:
            self.workers.pop(worker_id, None)

    def controls(self) -> Controls:
        return Controls(paused=self.control.paused, drain=self.control.drain)

    def publish_event(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.events.append(with_event_id(event))

    def last_error(self, job_id: str) -> str | None:
        return self.errors.get(job_id)
