"""Private redis-servers for tests and benchmarks.

- ``start_redis``: a plain throwaway server (no persistence) on a given port;
  the caller terminates it.
- ``RedisServer``: a server that fault scenarios may kill, restart and
  corrupt, configured as a fleet's Redis is (AOF on, ``appendfsync
  everysec``), bound to one address only (127.0.0.1, or the host end of a
  veth pair), started and stopped through a ``ProcessGroup`` so no server
  outlives its scenario.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.support.procs import Managed, ProcessGroup

REDIS_PASSWORD = "pw-5e1f0c9a77"
"""The password of the ``password_redis`` fixture's server."""

AOF_DIR = "appendonlydir"
MANIFEST = "appendonly.aof.manifest"


class RedisStartError(RuntimeError):
    """redis-server exited or never answered."""


def _exe(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RedisStartError(f"{name} is not installed (Debian package redis-server / redis-tools)")
    return path


def start_redis(workdir: Path, port: int, *extra: str, password: str | None = None) -> subprocess.Popen[bytes]:
    """Start a throwaway redis-server on 127.0.0.1:port (no persistence; with
    ``password``, one that wants it) and wait until it answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    auth = ("--requirepass", password) if password is not None else ()
    proc = subprocess.Popen(
        [_exe("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
         "--save", "", "--appendonly", "no", "--protected-mode", "no", *auth, *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port, password=password, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RedisStartError(f"redis-server exited with {proc.returncode} (port {port} taken?)")
            try:
                client.ping()
                return proc
            except redis.exceptions.ConnectionError:
                time.sleep(0.025)
    finally:
        client.close()
    proc.kill()
    proc.wait(10)
    raise RedisStartError(f"redis-server did not start on port {port}")


@dataclass
class RedisServer:
    """One redis-server with AOF in ``workdir``, restartable on the same port."""

    workdir: Path
    port: int
    procs: ProcessGroup
    bind: str = "127.0.0.1"
    extra: tuple[str, ...] = ()
    proc: Managed | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"redis://{self.bind}:{self.port}/0"

    def client(self, timeout_s: float = 5.0) -> redis.Redis:
        return redis.Redis(host=self.bind, port=self.port, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)

    def argv(self) -> list[str]:
        return [
            _exe("redis-server"), "--port", str(self.port), "--bind", self.bind, "--dir", str(self.workdir),
            "--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--protected-mode", "no",
            "--loglevel", "notice", *self.extra,
        ]  # fmt: skip

    def start(self, timeout_s: float = 20.0) -> None:
        """Start (or restart) the server and wait until it has loaded its data."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = self.procs.start(f"redis-{self.port}", self.argv())
        client = self.client(timeout_s=1.0)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                if not self.proc.alive():
                    raise RedisStartError(f"redis-server exited with {self.proc.returncode()}:\n{self.proc.log_tail()}")
                try:
                    client.ping()
                    return
                except (redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError):
                    time.sleep(0.05)
        finally:
            client.close()
        raise RedisStartError(f"redis-server did not answer on {self.bind}:{self.port}:\n{self.proc.log_tail()}")

    def kill9(self) -> None:
        """SIGKILL the server, as a crash would, and reap it."""
        if self.proc is not None:
            self.proc.kill9()
            self.proc.wait(10)

    def aof_tail_file(self) -> Path:
        """The AOF file currently appended to (the last ``incr`` of the manifest)."""
        manifest = (self.workdir / AOF_DIR / MANIFEST).read_text()
        incr = [line.split()[1] for line in manifest.splitlines() if line.split()[-1:] == ["i"]]
        if not incr:
            raise RedisStartError(f"no incremental AOF file in {manifest!r}")
        return self.workdir / AOF_DIR / incr[-1]

    def truncate_aof(self, keep_bytes: int) -> int:
        """Cut the AOF tail to ``keep_bytes`` (a torn write); return the bytes cut."""
        tail = self.aof_tail_file()
        size = tail.stat().st_size
        keep = max(0, min(keep_bytes, size))
        with open(tail, "r+b") as f:
            f.truncate(keep)
        return size - keep

    def check_aof_fix(self) -> str:
        """Run ``redis-check-aof --fix`` on the manifest (answering its prompt)."""
        manifest = self.workdir / AOF_DIR / MANIFEST
        res = subprocess.run(
            [_exe("redis-check-aof"), "--fix", str(manifest)],
            input="y\n", capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        return res.stdout + res.stderr
