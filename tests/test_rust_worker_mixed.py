"""A mixed fleet: a Python worker and a Rust worker drain one queue together;
every job is done exactly once and their outputs are interchangeable (same
schema, same metadata keys, embeddings equal to cosine 0.9999)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import redis

from bus.redis_transport import RedisTransport
from bus.settings import RedisSettings
from corpus.generate import generate_corpus
from tests.support import ROOT
from tests.support.rust_worker import (
    RUN_TIMEOUT_S,
    embeddings_by_row,
    enqueue_files,
    onnx_model_id,
    output_meta,
    python_env,
    python_worker_cmd,
    stats,
    wait_registered,
    worker_cmd,
    worker_env,
)
from workers.cleaning import Counts


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
            _, err = p.communicate(timeout=RUN_TIMEOUT_S)
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
    provenance = ["format_version", "model_id", "normalized", "input_path", "input_fingerprint", "row_start",
                  "row_end", "job_id", "worker_id", "worker_kind", "device", "precision",
                  "software_version"]  # fmt: skip
    documented = frozenset(f"embedfleet.{k}" for k in [*provenance, *Counts().as_dict()])  # docs/protocol.md "Output"
    assert keys == {documented}, keys ^ {documented}
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
        timeout=RUN_TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr
    py, rs = embeddings_by_row(by_python), embeddings_by_row(again / by_python.relative_to(out))
    assert py.keys() == rs.keys()
    assert min(float(np.dot(py[r], rs[r])) for r in py) >= 0.9999
    assert (
        pq.read_table(by_python)["id"].to_pylist()
        == pq.read_table(again / by_python.relative_to(out))["id"].to_pylist()
    )
