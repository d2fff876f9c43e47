# Twin: rust/worker/src/runtime.rs (docs/parity.md)
"""The worker loop over a ``Transport``: claim, run, complete; with leases,
retries, dead letters, controls, heartbeats, signals and a watchdog.

It knows nothing about embeddings: a ``JobHandler`` does the work (the
embedding pipeline in production, small fakes in tests), and it never
imports ``redis``: the transport is handed in.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from bus import constants as c
from bus.errors import BusAccessDenied, BusUnavailable, EmbedfleetError, LeaseLost, PermanentError, ProtocolError
from bus.transport import Controls, Delivery, Outcome, Transport
from workers import KIND, __version__, faults
from workers.heartbeat import Heartbeat, WorkerStats
from workers.lease import LeaseKeeper
from workers.paths import never_opens
from workers.result import JobResult
from workers.supervision import EXIT_ACCESS_DENIED, StopSignals, Watchdog
from workers.temps import TempFiles

log = logging.getLogger(__name__)
T = TypeVar("T")

RECONNECT_FIRST_S = 0.25
RECONNECT_MAX_S = 10.0
_BUS_DOWN = (BusUnavailable, BusAccessDenied)
"""What a best-effort bus call (an event, deregistering) shrugs off."""


class Prepared(Protocol):
    delivery: Delivery

    def close(self) -> None: ...


class JobHandler(Protocol):
    """Does the work of a job; ``prepare`` must return quickly (it starts I/O)."""

    def prepare(self, delivery: Delivery) -> Any: ...

    def run(self, prepared: Any, checkpoint: Callable[[], None]) -> JobResult: ...


def default_worker_id(kind: str = KIND) -> str:
    return f"{kind}-{socket.gethostname()}-{os.getpid()}"


@dataclass
class WorkerConfig:
    """How one worker behaves on the bus (the CLI fills it from flags)."""

    worker_id: str = field(default_factory=default_worker_id)
    lanes: list[str] = field(default_factory=lambda: [c.DEFAULT_LANE])
    lease_ms: int = c.DEFAULT_LEASE_MS
    max_deliveries: int = c.DEFAULT_MAX_DELIVERIES
    retry_base_ms: int = c.DEFAULT_RETRY_BASE_MS
    retry_max_ms: int = c.DEFAULT_RETRY_MAX_MS
    job_timeout_s: float | None = None
    burst: bool = False
    prefetch: bool = True
    block_ms: int = 1000
    heartbeat_s: float = c.DEFAULT_HEARTBEAT_MS / 1000
    controls_every_s: float = 1.0
    device: str = "cpu"
    record_extra: dict[str, Any] = field(default_factory=dict)
    handle_signals: bool = True


def backoff_ms(attempts: int, base_ms: int = c.DEFAULT_RETRY_BASE_MS, max_ms: int = c.DEFAULT_RETRY_MAX_MS) -> int:
    """Delay before the next attempt: ``base_ms`` doubled per attempt already
    spent, at most ``max_ms`` (twin: ``WorkerConfig::backoff_ms``; pinned by
    ``tests/vectors/backoff.json``)."""
    return int(min(max_ms, base_ms * 2 ** max(0, min(attempts - 1, 62))))


def reason_for(d: Delivery, e: BaseException) -> str:
    """``"<relative path>: <problem>"`` for any failure."""
    text = str(e).splitlines()[0] if str(e) else ""
    if not isinstance(e, EmbedfleetError):  # an unexpected error: say which
        text = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return text if text.startswith(d.job.path + ":") else f"{d.job.path}: {text}"


class Worker:
    """One worker process's loop; ``run()`` returns the exit status."""

    def __init__(
        self,
        transport: Transport,
        handler: JobHandler,
        config: WorkerConfig,
        backlog: Callable[[list[str]], int] | None = None,
        hard_exit: Callable[[int], None] = os._exit,
        temps: TempFiles | None = None,
    ) -> None:
        self.t = transport
        self.temps = temps
        """Removes stale temporary outputs: this worker's at start, a job's when it is taken over."""
        self.handler = handler
        self.cfg = config
        self.backlog = backlog
        self.stop = threading.Event()
        self.stats = WorkerStats()
        self.state = "starting"
        self.current: Delivery | None = None
        self.signals = StopSignals(self.stop, hard_exit)
        self.lease = LeaseKeeper(transport, config.worker_id, config.lease_ms)
        self.watchdog = Watchdog(config.job_timeout_s, self._on_timeout, hard_exit)
        self.heartbeat = Heartbeat(transport, self._record, config.heartbeat_s)
        self._controls = Controls()
        self._controls_at = -1e9
        self._next: Any = None
        self.reconnect_waits = 0
        """How many times a bus call waited before trying again (each wait
        0.25 s doubling up to 10 s): 0 in a run that never met an outage."""

    # -- bus calls -----------------------------------------------------------
    def _bus(self, fn: Callable[[], T], what: str, give_up: threading.Event | None = None) -> T | None:
        """Call the bus, waiting out outages with capped exponential backoff.
        Returns None only when ``give_up`` is set during an outage. Anything
        else, ``BusAccessDenied`` included, is raised at once."""
        delay = RECONNECT_FIRST_S
        while True:
            try:
                return fn()
            except BusUnavailable as e:
                log.warning("%s: %s; trying again in %.1f s", what, e, delay)
                self.reconnect_waits += 1
                if give_up is not None and give_up.wait(delay):
                    return None
                if give_up is None:
                    time.sleep(delay)
                delay = min(RECONNECT_MAX_S, delay * 2)

    def _event(self, kind: str, d: Delivery | None = None, **fields: Any) -> None:
        event: dict[str, Any] = {
            "v": c.EVENT_VERSION,
            "type": kind,
            "worker": self.cfg.worker_id,
            "kind": KIND,
            "ts_ms": int(time.time() * 1000),
            **fields,
        }
        if d is not None:
            event.update(job=d.job.id, path=d.job.path)
        try:
            self.t.publish_event(event)
        except _BUS_DOWN as e:
            log.warning("event %s not sent: %s", kind, e)

    def _record(self) -> Any:
        return self.stats.record(self.cfg, self.state, self.current)

    def _read_controls(self) -> Controls:
        now = time.monotonic()
        if now - self._controls_at >= self.cfg.controls_every_s:
            got = self._bus(self.t.controls, "reading controls", self.stop)
            if got is not None:
                self._controls, self._controls_at = got, now
        return self._controls

    # -- lifecycle -----------------------------------------------------------
    def run(self) -> int:
        """Work until stopped; the exit status (``EXIT_ACCESS_DENIED`` when
        Redis refuses this worker, at start or later: one line says why)."""
        try:
            return self._run()
        except BusAccessDenied as e:
            log.error("%s", e)
            return EXIT_ACCESS_DENIED

    def _run(self) -> int:
        if self.cfg.handle_signals and threading.current_thread() is threading.main_thread():
            self.signals.install()
        self._bus(lambda: self.t.ensure_lanes(self.cfg.lanes), "creating lanes", self.stop)
        self.lease.start()
        self.watchdog.start()
        self.heartbeat.start()
        self.state = "idle"
        self.heartbeat.beat()
        self._event(c.EVENT_WORKER_STARTED, device=self.cfg.device, lanes=self.cfg.lanes, version=__version__)
        log.info("worker %s on lanes %s", self.cfg.worker_id, ",".join(self.cfg.lanes))
        if self.temps is not None:
            self.temps.sweep_own()
        try:
            self._loop()
        finally:
            self._shutdown()
        return 0

    def _loop(self) -> None:
        while not self.stop.is_set():
            controls = self._read_controls()
            if controls.drain:
                log.info("drain requested: exiting")
                return
            if controls.paused and self._next is None:
                self.state = "paused"
                self.stop.wait(self.cfg.controls_every_s)
                continue
            if self.cfg.burst and self._next is None and self._nothing_left():
                # Leave as soon as the lanes are empty (checked before every
                # claim, so also after one that came back empty), instead of
                # first blocking block_ms on a claim that cannot succeed.
                log.info("burst: nothing left to do")
                return
            prepared = self._take(self.cfg.block_ms)
            if prepared is not None:
                self._run_one(prepared)

    def _shutdown(self) -> None:
        self.state = "stopping"
        if self._next is not None:
            self._release(self._next)
            self._next = None
        self.watchdog.stop()
        self.lease.stop()
        self.heartbeat.stop()
        self._event(c.EVENT_WORKER_STOPPED, rows=self.stats.rows_done, jobs=self.stats.jobs_done)
        try:
            self.t.deregister(self.cfg.worker_id)
        except _BUS_DOWN as e:
            log.warning("could not deregister: %s", e)

    def _nothing_left(self) -> bool:
        if self.backlog is None:
            return True
        left = self._bus(lambda: self.backlog(self.cfg.lanes) if self.backlog else 0, "reading backlog", self.stop)
        return left == 0

    # -- claiming ------------------------------------------------------------
    def _claim(self, block_ms: int) -> Delivery | None:
        try:
            return self._bus(lambda: self.t.claim(self.cfg.worker_id, self.cfg.lanes, block_ms), "claiming", self.stop)
        except ProtocolError as e:  # the transport dead-lettered it; go on at once
            log.error("dead letter: %s", e)
            return None

    def _take(self, block_ms: int) -> Any:
        if self._next is not None:
            prepared, self._next = self._next, None
            return prepared
        d = self._claim(block_ms)
        if d is None:
            return None
        self.lease.hold(d)
        return self.handler.prepare(d)

    def _prefetch(self) -> None:
        controls = self._controls
        if not self.cfg.prefetch or self.stop.is_set() or controls.paused or controls.drain:
            return
        try:  # one try: with Redis away, run the current job rather than wait for a next one
            d = self.t.claim(self.cfg.worker_id, self.cfg.lanes, 0)
        except (BusUnavailable, ProtocolError) as e:
            log.info("no prefetch: %s", e)
            return
        if d is not None:
            self.lease.hold(d)
            self._next = self.handler.prepare(d)

    def _release(self, prepared: Any) -> None:
        """Give back a prefetched job that never started (shutting down)."""
        d: Delivery = prepared.delivery
        prepared.close()
        self.lease.release(d)
        try:
            self.t.retry(self.cfg.worker_id, d, f"{d.job.path}: released unstarted by a stopping worker", 0)
        except _BUS_DOWN as e:
            log.warning("could not release %s (its lease will expire): %s", d.job.path, e)

    # -- running -------------------------------------------------------------
    def _run_one(self, prepared: Any) -> None:
        d: Delivery = prepared.delivery
        try:
            if self.lease.lost(d):
                self._event(c.EVENT_LEASE_LOST, d)
                return
            if d.attempts > self.cfg.max_deliveries:
                last = self._bus(lambda: self.t.last_error(d.job.id), "reading last error")
                self._dead(d, last or f"{d.job.path}: worker died {d.attempts - 1} times running it")
                return
            self.current, self.state = d, "busy"
            self.watchdog.begin(d)
            self._prefetch()
            self._execute(prepared, d)
        finally:
            self.watchdog.end()
            self.lease.release(d)
            prepared.close()
            self.current, self.state = None, "idle"
            self._controls_at = -1e9  # read the controls afresh before the next job

    def _execute(self, prepared: Any, d: Delivery) -> None:
        faults.job_started(d.job.path)
        if d.deliveries > 1 and self.temps is not None:  # taken over: its last owner may have left a temporary
            self.temps.taken_over(d.job)
        try:
            result = self.handler.run(prepared, lambda: self.lease.check(d))
        except LeaseLost:
            log.warning("%s: lease lost, abandoning the job", d.job.path)
            self._event(c.EVENT_LEASE_LOST, d)
            return
        except PermanentError as e:
            self._dead(d, reason_for(d, e))
            return
        except Exception as e:  # transient or unknown: retried, bounded by max_deliveries
            if never_opens(e):  # e.g. a temporary name too long for the file system
                self._dead(d, reason_for(d, e))
                return
            log.warning("%s failed: %s", d.job.path, e, exc_info=not isinstance(e, OSError | EmbedfleetError))
            self._fail_transient(d, reason_for(d, e))
            return
        self.watchdog.end()
        self._complete(d, result)

    def _complete(self, d: Delivery, result: JobResult) -> None:
        faults.reach("before_ack")
        # A skipped job's counts come from its output: the attempt that wrote
        # it died before complete.lua counted its work.
        work = (result.counts.model_calls, result.counts.rows_reused)
        outcome = self._bus(
            lambda: self.t.complete(self.cfg.worker_id, d, result.rows, result.skipped, *work), "completing"
        )
        if outcome is Outcome.LEASE_LOST:
            log.warning("%s: finished, but another worker owns it now: not counted", d.job.path)
            self._event(c.EVENT_LEASE_LOST, d)
            return
        self.stats.job_done(result)
        if outcome is Outcome.DUPLICATE:
            log.info("%s: already done by another delivery: acknowledged, not counted", d.job.path)
            return
        kind = c.EVENT_JOB_SKIPPED if result.skipped else c.EVENT_JOB_DONE
        self._event(kind, d, rows=result.rows, seconds=round(result.seconds, 3), counts=result.counts.as_dict())
        log.info(
            "%s: %s %d rows in %.2f s",
            d.job.path,
            "up to date," if result.skipped else "embedded",
            result.rows,
            result.seconds,
        )

    def _backoff_ms(self, d: Delivery) -> int:
        return backoff_ms(d.attempts, self.cfg.retry_base_ms, self.cfg.retry_max_ms)

    def _fail_transient(self, d: Delivery, reason: str) -> None:
        if d.attempts >= self.cfg.max_deliveries:
            self._dead(d, reason)
            return
        delay = self._backoff_ms(d)
        outcome = self._bus(lambda: self.t.retry(self.cfg.worker_id, d, reason, delay), "scheduling a retry")
        if outcome is Outcome.DONE:
            self._event(c.EVENT_JOB_RETRY, d, error=reason, attempt=d.attempts, delay_ms=delay)
        elif outcome is Outcome.LEASE_LOST:
            self._refused_after_failure(d, reason)

    def _dead(self, d: Delivery, reason: str) -> None:
        log.error("dead letter: %s", reason)
        outcome = self._bus(
            lambda: self.t.dead_letter(self.cfg.worker_id, d, reason, self.cfg.worker_id), "dead-lettering"
        )
        if outcome is Outcome.DONE:
            self._event(c.EVENT_JOB_DEAD, d, error=reason, attempts=d.attempts)
        elif outcome is Outcome.LEASE_LOST:
            self._refused_after_failure(d, reason)

    def _refused_after_failure(self, d: Delivery, reason: str) -> None:
        """A failure reported after another worker took the job over (its
        temporary file may have been swept by that worker): said, not counted."""
        log.warning("%s: failed (%s), but another worker owns it now: not counted", d.job.path, reason)
        self._event(c.EVENT_LEASE_LOST, d)

    def _on_timeout(self, d: Delivery, elapsed: float) -> None:
        """Watchdog: record why and give the job back (or dead-letter it) with a
        single bus call; the process exits right after, whatever happens here."""
        reason = f"{d.job.path}: job ran past --job-timeout ({elapsed:.0f} s > {self.cfg.job_timeout_s:.0f} s)"
        try:
            if d.attempts >= self.cfg.max_deliveries:
                self.t.dead_letter(self.cfg.worker_id, d, reason, self.cfg.worker_id)
                self._event(c.EVENT_JOB_DEAD, d, error=reason, attempts=d.attempts)
            else:
                self.t.retry(self.cfg.worker_id, d, reason, self._backoff_ms(d))
                self._event(c.EVENT_JOB_RETRY, d, error=reason, attempt=d.attempts)
        except Exception as e:
            log.error("could not record the timeout of %s (its lease will expire): %s", d.job.path, e)
