# Twin: rust/worker/src/keeper.rs (docs/parity.md)
"""The worker's registry record, refreshed every 5 s from a daemon thread."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bus.errors import EmbedfleetError
from bus.transport import Delivery, Transport, WorkerRecord
from workers import KIND, __version__

if TYPE_CHECKING:
    from workers.result import JobResult
    from workers.runtime import WorkerConfig

log = logging.getLogger(__name__)


@dataclass
class WorkerStats:
    """Running totals of one worker (for its record and its exit log)."""

    rows_done: int = 0
    jobs_done: int = 0
    busy_s: float = 0.0
    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    def job_done(self, result: JobResult) -> None:
        self.jobs_done += 1
        self.rows_done += result.rows
        if not result.skipped:
            self.busy_s += result.seconds

    @property
    def rows_per_s(self) -> float:
        return self.rows_done / self.busy_s if self.busy_s > 0 else 0.0

    def record(self, cfg: WorkerConfig, state: str, current: Delivery | None) -> WorkerRecord:
        return WorkerRecord(
            worker_id=cfg.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            kind=KIND,
            device=cfg.device,
            version=__version__,
            lanes=list(cfg.lanes),
            state=state,
            current_job=current.job.path if current is not None else None,
            rows_done=self.rows_done,
            jobs_done=self.jobs_done,
            rows_per_s=self.rows_per_s,
            started_ms=self.started_ms,
            extra=dict(cfg.record_extra),
        )


class Heartbeat:
    """Calls ``transport.heartbeat(record())`` every ``interval_s``."""

    def __init__(self, transport: Transport, record: Callable[[], WorkerRecord], interval_s: float) -> None:
        self.transport = transport
        self.record = record
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def beat(self) -> None:
        try:
            self.transport.heartbeat(self.record())
        except EmbedfleetError as e:
            log.warning("heartbeat failed: %s", e)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.beat()
