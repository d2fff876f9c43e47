# Twin: rust/worker/src/supervision.rs (docs/parity.md)
"""Signals and the per-job timeout watchdog.

First SIGINT/SIGTERM: finish the current job, then exit 0. Second: exit at
once, leaving the lease to expire (another worker takes the job over). A job
running past ``--job-timeout`` is abandoned and the process exits with
``EXIT_JOB_TIMEOUT`` so that its supervisor restarts it: a hung accelerator
call cannot be interrupted from inside the process.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from bus.transport import Delivery

log = logging.getLogger(__name__)

EXIT_JOB_TIMEOUT = 3
"""Exit status of a worker whose job ran past ``--job-timeout``."""

EXIT_ACCESS_DENIED = 77
"""Exit status when Redis refuses the worker's credentials or permissions
(WRONGPASS, NOAUTH, NOPERM): sysexits' ``EX_NOPERM``, the same in the Rust
worker (``rust/worker/src/supervision.rs``). A supervisor should not restart it."""


class StopSignals:
    """Turns the first SIGINT/SIGTERM into a stop request, the second into an exit."""

    def __init__(self, stop: threading.Event, hard_exit: Callable[[int], None] = os._exit) -> None:
        self.stop = stop
        self.hard_exit = hard_exit
        self.received = 0

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.handle)

    def handle(self, signum: int, _frame: FrameType | None = None) -> None:
        self.received += 1
        name = signal.Signals(signum).name
        if self.received == 1:
            log.warning("%s: finishing the current job, then exiting (send again to exit now)", name)
            self.stop.set()
        else:
            log.warning("%s again: exiting now; the job's lease will expire", name)
            self.hard_exit(128 + signum)


class Watchdog:
    """Calls ``on_timeout`` then exits when a job runs past ``timeout_s``."""

    def __init__(
        self,
        timeout_s: float | None,
        on_timeout: Callable[[Delivery, float], None],
        hard_exit: Callable[[int], None] = os._exit,
        poll_s: float = 0.5,
    ) -> None:
        self.timeout_s = timeout_s
        self.on_timeout = on_timeout
        self.hard_exit = hard_exit
        self.poll_s = poll_s
        self._job: tuple[Delivery, float] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="watchdog", daemon=True)

    def start(self) -> None:
        if self.timeout_s:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def begin(self, d: Delivery) -> None:
        with self._lock:
            self._job = (d, time.monotonic())

    def end(self) -> None:
        with self._lock:
            self._job = None

    def _loop(self) -> None:
        assert self.timeout_s is not None
        while not self._stop.wait(self.poll_s):
            with self._lock:
                job = self._job
            if job is None or time.monotonic() - job[1] < self.timeout_s:
                continue
            elapsed = time.monotonic() - job[1]
            log.error(
                "%s ran %.0f s, past --job-timeout %.0f s: abandoning it and exiting",
                job[0].job.path,
                elapsed,
                self.timeout_s,
            )
            try:
                self.on_timeout(job[0], elapsed)
            finally:
                self.hard_exit(EXIT_JOB_TIMEOUT)
            return
