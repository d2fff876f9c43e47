"""Running the release Rust worker (and, beside it, the Python worker) in
tests, and reading back what they left in Redis and on disk. The binary and
the ONNX export come from ``make setup``; the ``worker_bin`` fixture
(``tests/conftest.py``) fails with how to make them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

import models.ort
from bus.messages import Job
from bus.redis_transport import RedisTransport
from bus.settings import RedisSettings
from models.source import ONNX_MANIFEST, model_id
from tests.support import ROOT
from workers.testing import enqueue_all, jobs_for

TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache" / "embedfleet" / "target")
BINARY = TARGET / "release" / "embedfleet-worker"
ONNX_DIR = ROOT / "models" / "onnx" / "minilm"
RUN_TIMEOUT_S = 240
"""How long a worker run (or a mixed fleet) may take before a test gives up."""


def ort_library() -> Path:
    """The ONNX Runtime library inside the onnxruntime wheel."""
    try:
        return models.ort.ort_library()
    except FileNotFoundError as e:
        pytest.fail(str(e))


def require_worker() -> Path:
    """The release binary and the ONNX export, or a failure saying how to make them."""
    if not BINARY.is_file():
        pytest.fail(f"{BINARY} is not built: run `make worker-rust`")
    if not (ONNX_DIR / ONNX_MANIFEST).is_file():
        pytest.fail(f"{ONNX_DIR} is missing: run `make export-onnx`")
    return BINARY


def worker_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDFLEET_")}
    env.update(ORT_DYLIB_PATH=str(ort_library()), EMBEDFLEET_MODEL_DIR=str(ONNX_DIR))
    env.update(extra)
    return env


def worker_cmd(binary: Path, settings: RedisSettings, data: Path, *args: str) -> list[str]:
    url = f"redis://{settings.host}:{settings.port}/{settings.db}"
    return [
        str(binary),
        "--redis-url",
        url,
        "--namespace",
        settings.namespace,
        "--data-root",
        str(data),
        "--threads",
        "2",
        *args,
    ]


def run_worker(cmd: Sequence[str], **env: str) -> subprocess.CompletedProcess[str]:
    """Run a worker to its exit (``--burst`` or an error)."""
    return subprocess.run(list(cmd), env=worker_env(**env), capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


def onnx_model_id() -> str:
    return model_id(ONNX_DIR)


def enqueue_files(t: RedisTransport, data: Path, files: list[Path], **kw: Any) -> list[Job]:
    jobs = jobs_for(data, files, onnx_model_id(), **kw)
    enqueue_all(t, jobs)
    return jobs


def text_hash(r: redis.Redis, key: str) -> dict[str, str]:
    """A hash of a bytes-mode client, decoded."""
    raw = cast(dict[bytes, bytes], r.hgetall(key))
    return {k.decode(): v.decode() for k, v in raw.items()}


def stream(r: redis.Redis, key: str) -> list[dict[str, str]]:
    """The entries of a stream, fields decoded."""
    raw = cast(list[tuple[bytes, dict[bytes, bytes]]], r.xrange(key))
    return [{k.decode(): v.decode() for k, v in fields.items()} for _id, fields in raw]


def stats(r: redis.Redis, ns: str) -> dict[str, int]:
    return {k: int(v) for k, v in text_hash(r, f"{ns}:stats").items()}


def dead_letters(r: redis.Redis, ns: str) -> dict[str, str]:
    """Job path -> dead-letter reason."""
    return {json.loads(f["job"])["path"]: f["reason"] for f in stream(r, f"{ns}:dead")}


def events(r: redis.Redis, ns: str) -> list[dict[str, Any]]:
    return [json.loads(f["event"]) for f in stream(r, f"{ns}:events")]


def output_meta(path: Path) -> dict[str, str]:
    raw = pq.read_metadata(path).metadata or {}
    return {k.decode(): v.decode() for k, v in raw.items() if k.startswith(b"embedfleet.")}


def write_texts(path: Path, texts: list[str | None], ids: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cols: dict[str, Any] = {"text": pa.array(texts, pa.string())}
    if ids:
        cols = {"id": pa.array([f"r{i}" for i in range(len(texts))]), **cols}
    pq.write_table(pa.table(cols), path, row_group_size=64)
    return path


def embeddings_by_row(path: Path) -> dict[int, np.ndarray]:
    t = pq.read_table(path)
    emb = np.asarray(t["embedding"].combine_chunks().flatten().to_numpy()).reshape(-1, 384)
    return dict(zip(t["row"].to_pylist(), emb, strict=True))


def rust_worker_binary() -> Path:
    """The release binary alone (no model needed), asserted to exist."""
    assert BINARY.is_file(), f"{BINARY} is not built: run `make worker-rust`"
    return BINARY


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
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not all(r.hexists(f"{ns}:workers", i) for i in ids):
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"{p.args!r} exited {p.returncode} before registering: {p.communicate()[1]}")
        assert time.monotonic() < deadline, "workers did not register"
        time.sleep(0.1)
