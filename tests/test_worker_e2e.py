"""``python -m workers.mps`` as a process against a real redis-server: resume
after kill -9, graceful and hard stops, the watchdog exit, a Redis restart,
and one run with the real model. Most runs use ``--embedder hash`` (no model,
deterministic) so that they take seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import redis

from bus.redis_transport import RedisTransport
from corpus.generate import generate_corpus
from models.source import model_id
from tests.support import ROOT
from tests.support.procs import free_port
from tests.support.redis_server import start_redis
from workers.embedder import HashEmbedder
from workers.supervision import EXIT_JOB_TIMEOUT
from workers.testing import enqueue_all, jobs_for

NS = "eftest"
"""The namespace of the ``transport`` fixture (tests/conftest.py)."""
WAIT_S = 60.0


def wait_for(cond: Callable[[], bool], timeout: float = WAIT_S, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def start_worker(url: str, data: Path, *extra: str, log: Path | None = None) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "workers.mps",
        "--redis-url",
        url,
        "--namespace",
        NS,
        "--data-root",
        str(data),
        "--embedder",
        "hash",
        "--log-level",
        "INFO",
        *extra,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("EMBEDFLEET_REDIS_URL", None)
    out = open(log, "ab") if log else subprocess.DEVNULL
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def done_count(r: redis.Redis) -> int:
    return int(r.hget(f"{NS}:stats", "done") or 0)


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, list[Path]]:
    files = generate_corpus(tmp_path / "data", subreddits=2, files_per_subreddit=6, rows_per_file=30)
    return tmp_path / "data", files


@pytest.fixture(scope="module")
def model() -> str:
    return model_id()


def enqueue(t: RedisTransport, data: Path, files: list[Path], model: str) -> int:
    t.ensure_lanes(["default"])
    return enqueue_all(t, jobs_for(data, files, model, id_column="id"))


def assert_all_outputs_once(r: redis.Redis, data: Path, files: list[Path]) -> None:
    states = {v for v in r.hvals(f"{NS}:state")}
    assert states == {b"d"}
    assert done_count(r) == len(files)
    outputs = sorted((data / "embeddings").rglob("*.parquet"))
    assert len(outputs) == len(files)
    stats = {k.decode(): int(v) for k, v in r.hgetall(f"{NS}:stats").items()}
    expected_rows = sum(pq.read_table(f, columns=["text"]).column("text").drop_null().__len__() for f in files)
    assert stats["rows"] == expected_rows  # nothing counted twice
    oracle = HashEmbedder("x")
    for out in outputs:
        table = pq.read_table(out)
        src = pq.read_table(data / "chains" / out.relative_to(data / "embeddings"))
        texts = [src.column("text")[i].as_py() for i in table.column("row").to_pylist()]
        got = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
        want = oracle.encode(texts).embeddings
        # same as a fault-free run: bit-identical where this job ran the model, the
        # reuse store's binary16 copy (cosine >= 0.99999, docs/reuse.md) where a
        # text's vector came from another job
        cosine = np.sum(got * want, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
        assert cosine.min() >= 0.99999, out


def test_kill_9_mid_run_then_another_worker_finishes_everything_once(
    transport: RedisTransport,
    redis_client: redis.Redis,
    redis_url: str,
    corpus: tuple[Path, list[Path]],
    model: str,
    tmp_path: Path,
) -> None:
    data, files = corpus
    assert enqueue(transport, data, files, model) == len(files)
    slow = ["--hash-seconds-per-row", "0.01", "--lease-ms", "1500"]
    first = start_worker(redis_url, data, *slow, log=tmp_path / "first.log")
    try:
        wait_for(lambda: done_count(redis_client) >= 3, what="three jobs done")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        stop(first)
    assert done_count(redis_client) < len(files)
    second = start_worker(redis_url, data, "--burst", "--lease-ms", "1500", log=tmp_path / "second.log")
    try:
        assert second.wait(WAIT_S) == 0, (tmp_path / "second.log").read_text()
    finally:
        stop(second)
    assert_all_outputs_once(redis_client, data, files)
    visible = [p for p in (data / "embeddings").rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert all(p.suffix == ".parquet" for p in visible)


def test_sigterm_finishes_the_current_job_then_exits_0(
    transport: RedisTransport,
    redis_client: redis.Redis,
    redis_url: str,
    corpus: tuple[Path, list[Path]],
    model: str,
    tmp_path: Path,
) -> None:
    data, files = corpus
    enqueue(transport, data, files, model)
    proc = start_worker(redis_url, data, "--hash-seconds-per-row", "0.02", log=tmp_path / "w.log")
    try:
        wait_for(lambda: done_count(redis_client) >= 1, what="a job done")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WAIT_S) == 0
    finally:
        stop(proc)
    done = done_count(redis_client)
    assert done < len(files)  # SIGTERM did not drain the queue (one job was done before it, waited for above)
    pending = redis_client.xpending(f"{NS}:q:default", "workers")
    assert pending["pending"] == 0  # current job completed, prefetched one given back
    assert redis_client.hlen(f"{NS}:workers") == 0
    assert len(list((data / "embeddings").rglob("*.parquet"))) == done
    log = (tmp_path / "w.log").read_text()
    assert "SIGTERM: finishing the current job" in log


def test_second_signal_exits_at_once_and_leaves_the_lease(
    transport: RedisTransport,
    redis_client: redis.Redis,
    redis_url: str,
    corpus: tuple[Path, list[Path]],
    model: str,
    tmp_path: Path,
) -> None:
    data, files = corpus
    enqueue(transport, data, files[:1], model)
    proc = start_worker(redis_url, data, "--hash-seconds-per-row", "1", log=tmp_path / "w.log")
    try:
        wait_for(lambda: redis_client.xpending(f"{NS}:q:default", "workers")["pending"] == 1, what="a claim")
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 128 + signal.SIGTERM
    finally:
        stop(proc)
    assert redis_client.xpending(f"{NS}:q:default", "workers")["pending"] == 1  # left to expire
    assert done_count(redis_client) == 0


def test_job_past_the_timeout_makes_the_worker_exit_3(
    transport: RedisTransport,
    redis_client: redis.Redis,
    redis_url: str,
    corpus: tuple[Path, list[Path]],
    model: str,
    tmp_path: Path,
) -> None:
    data, files = corpus
    job = jobs_for(data, files[:1], model, id_column="id")[0]
    enqueue(transport, data, files[:1], model)
    proc = start_worker(redis_url, data, "--hash-seconds-per-row", "1", "--job-timeout", "1", log=tmp_path / "w.log")
    try:
        assert proc.wait(WAIT_S) == EXIT_JOB_TIMEOUT
    finally:
        stop(proc)
    reason = redis_client.hget(f"{NS}:errors", job.id)
    assert reason is not None and reason.decode().startswith(f"{job.path}: job ran past --job-timeout")
    assert redis_client.zcard(f"{NS}:delayed:default") == 1  # given back for a later attempt


def test_worker_rides_out_a_redis_restart(tmp_path: Path, corpus: tuple[Path, list[Path]], model: str) -> None:
    data, files = corpus
    port = free_port()
    aof = ("--appendonly", "yes", "--appendfsync", "always")
    server = start_redis(tmp_path / "redis", port, *aof)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis(port=port)
    proc = None
    try:
        enqueue(RedisTransport(client, namespace=NS), data, files, model)
        # A reply lost in the crash leaves its entry pending: a short lease gets it back soon.
        proc = start_worker(
            url, data, "--burst", "--hash-seconds-per-row", "0.01", "--lease-ms", "2000", log=tmp_path / "w.log"
        )
        wait_for(lambda: done_count(client) >= 2, what="two jobs done")
        server.kill()
        server.wait(10)
        time.sleep(2.0)
        server = start_redis(tmp_path / "redis", port, *aof)
        assert proc.wait(WAIT_S) == 0, (tmp_path / "w.log").read_text()
        assert_all_outputs_once(client, data, files)
    finally:
        if proc is not None:
            stop(proc)
        server.kill()
        server.wait(10)


def test_no_redis_url_and_nothing_advertised_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "EMBEDFLEET_REDIS_URL"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "workers.mps", "--data-root", str(tmp_path / "data"), "--embedder", "hash"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "no Redis URL" in proc.stderr and "--redis-url" in proc.stderr


def test_a_malformed_redis_url_is_one_line_naming_the_flag_without_the_password(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    for flag, extra in [
        ("--redis-url", ["--redis-url", "http://:hunter2@127.0.0.1:1/0"]),
        ("--reuse-url", ["--redis-url", "redis://127.0.0.1:1/0", "--reuse-url", "ftp://:hunter2@127.0.0.1:1/0"]),
    ]:
        proc = subprocess.run(
            [sys.executable, "-m", "workers.mps", "--data-root", str(tmp_path / "data"), "--embedder", "hash", *extra],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr and "hunter2" not in proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith(f"python -m workers.mps: error: {flag}: unsupported Redis URL scheme"), line


def test_bad_flags_are_refused_before_anything_starts(tmp_path: Path, redis_url: str) -> None:
    for extra, message in [
        (["--max-memory", "lots"], "not a size"),
        (["--max-open-files", "3"], "below the minimum"),
        (["--lanes", ","], "names no lane"),
    ]:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "workers.mps",
                "--redis-url",
                redis_url,
                "--data-root",
                str(tmp_path),
                "--embedder",
                "hash",
                *extra,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr


@pytest.mark.slow
def test_real_model_burst_run_writes_every_output(
    transport: RedisTransport,
    redis_client: redis.Redis,
    redis_url: str,
    tmp_path: Path,
    model: str,
) -> None:
    data = tmp_path / "data"
    files = generate_corpus(data, subreddits=1, files_per_subreddit=2, rows_per_file=12)
    enqueue(transport, data, files, model)
    cmd = [
        sys.executable,
        "-m",
        "workers.mps",
        "--redis-url",
        redis_url,
        "--namespace",
        NS,
        "--data-root",
        str(data),
        "--burst",
        "--max-memory",
        "8G",
        "--max-open-files",
        "256",
    ]
    proc = subprocess.run(
        cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert done_count(redis_client) == 2
    for out in (data / "embeddings").rglob("*.parquet"):
        meta = pq.read_metadata(out).metadata
        assert meta[b"embedfleet.model_id"].decode() == model
        assert meta[b"embedfleet.precision"] in (b"fp32", b"bf16")
    assert "precision" in proc.stderr and "redis://127.0.0.1" in proc.stderr
