"""Processes a test or a benchmark starts, and the guarantee that none outlives it.

Every process runs in its own session (so a signal reaches it alone, never
the test runner), logs to a file the failure message can quote, and is
registered with a ``ProcessGroup`` whose ``close()`` SIGKILLs whatever is
still running: callers call it from a ``finally`` or a fixture teardown.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import ROOT


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Managed:
    """One started process: its name, its log, and signals by pid."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def returncode(self) -> int | None:
        return self.proc.poll()

    def signal(self, sig: int) -> None:
        """Send ``sig`` unless the process already exited."""
        if self.alive():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill9(self) -> None:
        self.signal(signal.SIGKILL)

    def stop(self) -> None:
        self.signal(signal.SIGSTOP)

    def cont(self) -> None:
        self.signal(signal.SIGCONT)

    def wait(self, timeout_s: float) -> int | None:
        """Exit status, or ``None`` if still running after ``timeout_s``."""
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@dataclass
class ProcessGroup:
    """Starts processes and kills every one of them on ``close()``."""

    log_dir: Path
    started: list[Managed] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        prefix: Sequence[str] = (),
        cwd: Path | None = None,
    ) -> Managed:
        """Start ``prefix + argv`` (e.g. ``ip netns exec NS``) with ``env`` added,
        in ``cwd`` (default: the repository root)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.{len(self.started)}.log"
        full_env = {**os.environ, **(env or {})}
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [*prefix, *argv],
                cwd=cwd or ROOT,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        managed = Managed(name, proc, log)
        self.started.append(managed)
        return managed

    def running(self) -> list[Managed]:
        return [m for m in self.started if m.alive()]

    def close(self) -> None:
        """SIGCONT then SIGKILL everything still running, and reap it; then
        SIGKILL what is left of each one's session (each starts its own), so
        a child it spawned (an embedded Redis, a worker) dies with it even
        when the test failed before stopping it cleanly."""
        for m in self.started:
            if m.alive():
                m.cont()
                m.kill9()
        for m in self.started:
            m.wait(10)
            kill_session(m.pid)

    def logs(self, chars: int = 2000) -> str:
        """Tails of every log, for an assertion message."""
        return "\n".join(f"--- {m.name} pid {m.pid} rc {m.returncode()}\n{m.log_tail(chars)}" for m in self.started)


def kill_session(pid: int) -> None:
    """SIGKILL the process group a ``start_new_session`` child leads."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def wait_until(predicate: Callable[[], bool], timeout_s: float, every_s: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds or ``timeout_s`` passes; return whether it held."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(every_s)
