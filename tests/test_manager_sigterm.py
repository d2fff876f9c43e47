"""SIGTERM ends ``python -m manager serve`` in every state, promptly: while
it embeds (exit 130, interrupted), while the cluster command runs (the
command is ended too), and after the run with ``--keep-serving`` (exit with
the run's own status); and ``run --keep-serving`` likewise."""

from __future__ import annotations

import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bus.settings import RedisSettings
from tests.support import ROOT
from tests.support.fakes import FakeWorker
from tests.support.procs import free_port, kill_session

MODEL = "all-MiniLM-L6-v2@0123456789abcdef"


class Manager:
    """``python -m manager ...`` in a subprocess, its output read line by line."""

    def __init__(self, *argv: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "manager", *argv],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # its children (embedded Redis, workers) in its group: close() kills them all
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for(self, text: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.seen.append(line)
            if text in line:
                return
        raise AssertionError(f"{text!r} never came:\n{''.join(self.seen)}")

    def terminate_and_wait(self, within_s: float = 8.0) -> tuple[int, float]:
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(within_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"still running {within_s} s after SIGTERM:\n{''.join(self.seen)}") from None
        return rc, time.monotonic() - t0

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        kill_session(self.proc.pid)  # an embedded Redis or a worker it started, after a failed test


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    from corpus.generate import generate_corpus

    data = tmp_path / "data"
    generate_corpus(data, suffixes=1, subreddits=2, files_per_subreddit=2, rows_per_file=5, seed=3)
    return data


@pytest.fixture
def managers() -> Iterator[list[Manager]]:
    started: list[Manager] = []
    yield started
    for m in started:
        m.close()


def serve(settings: RedisSettings, data: Path, *extra: str) -> Manager:
    url = f"redis://{settings.host}:{settings.port}/0"
    return Manager("serve", "--redis-url", url, "--namespace", settings.namespace, "--input", str(data),
                   "--model", MODEL, "--no-advertise", *extra)  # fmt: skip


def test_sigterm_after_the_run_ends_keep_serving_with_the_runs_exit_status(
    settings: RedisSettings, redis_client: redis.Redis, corpus: Path, managers: list[Manager]
) -> None:
    worker = FakeWorker(settings, "w").start()
    try:
        m = serve(settings, corpus, "--port", str(free_port()), "--keep-serving")
        managers.append(m)
        m.wait_for("shows the final state")
    finally:
        worker.stop()
    rc, took = m.terminate_and_wait()
    assert rc == 0 and took < 5


def test_sigterm_after_a_run_with_dead_letters_exits_1(
    settings: RedisSettings, redis_client: redis.Redis, corpus: Path, managers: list[Manager]
) -> None:
    worker = FakeWorker(settings, "w", fail=lambda job: f"{job.path}: corrupt footer").start()
    try:
        m = serve(settings, corpus, "--port", str(free_port()), "--keep-serving")
        managers.append(m)
        m.wait_for("shows the final state")
    finally:
        worker.stop()
    assert m.terminate_and_wait()[0] == 1


def test_sigterm_while_embedding_interrupts_the_run(
    settings: RedisSettings, redis_client: redis.Redis, corpus: Path, managers: list[Manager]
) -> None:
    m = serve(settings, corpus, "--no-api", "--keep-serving")  # no worker: the run waits
    managers.append(m)
    m.wait_for("embedding")
    rc, took = m.terminate_and_wait()
    assert rc == 130 and took < 5


def test_sigterm_while_clustering_ends_the_cluster_command(
    settings: RedisSettings, redis_client: redis.Redis, corpus: Path, managers: list[Manager], tmp_path: Path
) -> None:
    marker = tmp_path / "cluster.pid"
    script = f"import os, time; open({str(marker)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    worker = FakeWorker(settings, "w").start()
    try:
        m = serve(settings, corpus, "--no-api", "--cluster-command", shlex.join([sys.executable, "-c", script]))
        managers.append(m)
        deadline = time.monotonic() + 60
        while not (marker.is_file() and marker.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()
    pid = int(marker.read_text())
    rc, took = m.terminate_and_wait(within_s=15)
    assert rc == 130 and took < 12
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_run_keep_serving_ends_on_sigterm(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path, managers: list[Manager]
) -> None:
    data = tmp_path / "data"
    (data / "chains").mkdir(parents=True)  # nothing to embed: the run ends at once
    m = Manager("run", "--data", str(data), "--redis-url", redis_url, "--python-workers", "0", "--rust-workers",
                "0", "--no-cluster", "--port", str(free_port()), "--keep-serving")  # fmt: skip
    managers.append(m)
    m.wait_for("shows the final state")
    rc, took = m.terminate_and_wait()
    assert rc == 0 and took < 5
