"""A mixed fleet: a Python worker and a Rust worker drain one queue together;
every job is done exactly once and their outputs are interchangeable (same
schema, same metadata keys, embeddings equal to cosine 0.9999)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import redis

from bus.redis_transport import RedisTransport
from bus.settings import RedisSettings
from corpus.generate import generate_corpus
from tests.test_rust_worker import (
    ROOT,
    embeddings_by_row,
    enqueue_files,
    onnx_model_id,
    output_meta,
    require_worker,
    stats,
    worker_cmd,
    worker_env,
)


@pytest.fixture(scope="session")
def worker_bin() -> Path:
    return require_worker()


TIMEOUT_S = 240


def python_worker_cmd(settings: RedisSettings, data: Path, out: Path) -> list[str]:
    url = f"redis://{settings.host}:{settings.port}/{settings.db}"
    return [
        sys.executable,
        "-m",
        "workers.mps",
        "--redis-url",
        url,
        "--namespace",
        settings.namespace,
        "--input-root",
        str(data),
        "--output-root",
        str(out),
        "--burst",
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--threads",
        "1",
        "--worker-id",
        "python-mixed",
    ]


def python_env() -> dict[str, str]:
    """The Python worker's environment: its own model directory (the PyTorch one)."""
    env = worker_env(HF_HUB_OFFLINE="1")
    env.pop("EMBEDFLEET_MODEL_DIR")
    return env


def wait_registered(r: redis.Redis, ns: str, ids: list[str], procs: list[subprocess.Popen[str]]) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not all(r.hexists(f"{ns}:workers", i) for i in ids):
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"{p.args[0]} exited {p.returncode} before registering: {p.communicate()[1]}")
        assert time.monotonic() < deadline, "workers did not register"
        time.sleep(0.1)


@pytest.mark.slow
def test_python_and_rust_workers_drain_one_queue_with_interchangeable_outputs(
    worker_bin: Path,
    settings: RedisSettings,
    transport: RedisTransport,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    files = generate_corpus(data, subreddits=2, files_per_subreddit=4, rows_per_file=40, seed=3)
    ns = settings.namespace
    redis_client.hset(f"{ns}:control", "paused", "1")  # both workers load their models first
    enqueue_files(transport, data, files, id_column="id")
    rust = [*worker_cmd(worker_bin, settings, data, "--burst", "--output-root", str(out), "--worker-id", "rust-mixed")]
    rust[rust.index("--threads") + 1] = "1"
    procs = [
        subprocess.Popen(
            python_worker_cmd(settings, data, out),
            cwd=ROOT,
            env=python_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        ),
        subprocess.Popen(rust, env=worker_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True),
    ]
    try:
        wait_registered(redis_client, ns, ["python-mixed", "rust-mixed"], procs)
        redis_client.hdel(f"{ns}:control", "paused")
        for p in procs:
            _, err = p.communicate(timeout=TIMEOUT_S)
            assert p.returncode == 0, err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)

    s = stats(redis_client, ns)
    assert (s["done"], s.get("dead", 0), s.get("duplicates", 0)) == (len(files), 0, 0)
    outputs = sorted(out.rglob("*.parquet"))
    assert len(outputs) == len(files)
    kinds = {output_meta(p)["embedfleet.worker_kind"] for p in outputs}
    assert kinds == {"python", "rust"}, f"both workers should have taken jobs, got {kinds}"

    schemas = {str(pq.read_schema(p).remove_metadata()) for p in outputs}
    assert len(schemas) == 1, schemas
    keys = {frozenset(output_meta(p)) for p in outputs}
    assert len(keys) == 1 and len(next(iter(keys))) == 20
    assert {output_meta(p)["embedfleet.model_id"] for p in outputs} == {onnx_model_id()}
    assert ds.dataset(out, format="parquet").to_table().num_rows == sum(
        int(output_meta(p)["embedfleet.rows_embedded"]) for p in outputs
    ), "one dataset over both kinds' files"

    # The same file embedded by the other kind: equal to cosine 0.9999.
    by_python = next(p for p in outputs if output_meta(p)["embedfleet.worker_kind"] == "python")
    rel = by_python.relative_to(out).as_posix().replace("embeddings/", "chains/", 1)
    redis_client.flushdb()
    enqueue_files(transport, data, [data / rel], id_column="id")
    again = tmp_path / "again"
    proc = subprocess.run(
        [*worker_cmd(worker_bin, settings, data, "--burst", "--output-root", str(again))],
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr
    py, rs = embeddings_by_row(by_python), embeddings_by_row(again / by_python.relative_to(out))
    assert py.keys() == rs.keys()
    assert min(float(np.dot(py[r], rs[r])) for r in py) >= 0.9999
    assert (
        pq.read_table(by_python)["id"].to_pylist()
        == pq.read_table(again / by_python.relative_to(out))["id"].to_pylist()
    )
