"""Fake workers for the manager's tests: they speak the real bus through
``RedisTransport`` (claim, complete, dead-letter, heartbeat, events) but
embed nothing. Each runs in a thread and stops on ``stop()`` or, in burst
mode, when its lanes are empty."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bus.messages import Job
from bus.redis_transport import RedisTransport, connect
from bus.settings import RedisSettings
from bus.transport import WorkerRecord


def make_jobs(n: int, model: str = "all-MiniLM-L6-v2@0000000000000000", prefix: str = "s") -> list[Job]:
    return [Job.create(f"chains/2024-01/{prefix}/part-{i:04d}.parquet", f"{100 + i}-{i}", model) for i in range(n)]


@dataclass
class FakeWorker:
    """A worker that 'embeds' each job by sleeping ``job_s`` seconds."""

    settings: RedisSettings
    worker_id: str
    kind: str = "python"
    device: str = "cpu"
    job_s: float = 0.01
    rows_per_job: int = 100
    burst: bool = False
    fail: Callable[[Job], str | None] = lambda job: None
    """Returns a permanent failure reason for jobs that must be dead-lettered."""
    heartbeat_s: float = 0.5
    lanes: list[str] = field(default_factory=lambda: ["default"])
    jobs_done: int = 0

    def __post_init__(self) -> None:
        self.transport = RedisTransport(connect(self.settings), namespace=self.settings.namespace, lease_ms=30_000)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=self.worker_id, daemon=True)
        self.record = WorkerRecord(
            worker_id=self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            kind=self.kind,
            device=self.device,
            version="0.1.0-test",
            lanes=self.lanes,
            started_ms=int(time.time() * 1000),
        )

    def start(self) -> FakeWorker:
        self.transport.ensure_lanes(self.lanes)
        self.transport.heartbeat(self.record)
        self.transport.publish_event(
            {
                "v": 1,
                "type": "worker_started",
                "worker": self.worker_id,
                "kind": self.kind,
                "ts_ms": int(time.time() * 1000),
            }
        )
        self.thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self.thread.join(timeout_s)

    def _beat(self, last: float) -> float:
        now = time.monotonic()
        if now - last >= self.heartbeat_s:
            self.transport.heartbeat(self.record)
            return now
        return last

    def _loop(self) -> None:
        last = 0.0
        while not self._stop.is_set():
            last = self._beat(last)
            controls = self.transport.controls()
            if controls.drain:
                break
            if controls.paused:
                self.record.state = "paused"
                time.sleep(0.05)
                continue
            d = self.transport.claim(self.worker_id, self.lanes, block_ms=100)
            if d is None:
                self.record.state = "idle"
                if self.burst:
                    break
                continue
            self._work(d)
        self.record.state = "stopped"
        self.transport.heartbeat(self.record)
        self.transport.publish_event(
            {
                "v": 1,
                "type": "worker_stopped",
                "worker": self.worker_id,
                "kind": self.kind,
                "ts_ms": int(time.time() * 1000),
            }
        )

    def _work(self, d: object) -> None:
        from bus.transport import Delivery

        assert isinstance(d, Delivery)
        self.record.state, self.record.current_job = "working", d.job.id
        self.transport.heartbeat(self.record)
        t0 = time.monotonic()
        time.sleep(self.job_s)
        base = {
            "v": 1,
            "worker": self.worker_id,
            "kind": self.kind,
            "job": d.job.id,
            "path": d.job.path,
            "ts_ms": int(time.time() * 1000),
            "seconds": round(time.monotonic() - t0, 4),
        }
        reason = self.fail(d.job)
        if reason is not None:
            self.transport.dead_letter(self.worker_id, d, reason, self.worker_id)
            self.transport.publish_event({**base, "type": "job_dead", "error": reason})
        else:
            self.transport.complete(self.worker_id, d, self.rows_per_job)
            self.jobs_done += 1
            self.record.jobs_done += 1
            self.record.rows_done += self.rows_per_job
            self.record.rows_per_s = self.rows_per_job / max(self.job_s, 1e-3)
            self.transport.publish_event(
                {
                    **base,
                    "type": "job_done",
                    "rows": self.rows_per_job,
                    "counts": {"rows_null": 0},
                    "cpu_s": 0.001,
                    "rss_bytes": 1 << 20,
                }
            )
        self.record.current_job = None
