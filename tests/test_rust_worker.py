"""The Rust worker binary end to end against a real Redis: embeddings equal to
sentence-transformers' (long texts included), the int8 variant close to them,
bad input dead-lettered with reasons naming the file, lanes in priority
order, and loud failures for a missing runtime or CUDA.

The binary and the ONNX export come from ``make setup``; the helpers are in
``tests/support/rust_worker.py``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from bus.redis_transport import RedisTransport
from bus.settings import RedisSettings
from corpus.generate import generate_corpus
from models import sample_texts
from models.source import default_model_dir, model_id
from tests.support.rust_worker import (
    dead_letters,
    embeddings_by_row,
    enqueue_files,
    events,
    output_meta,
    run_worker,
    stats,
    worker_cmd,
    write_texts,
)


# -- tests -------------------------------------------------------------------------
def _corpus(data: Path) -> tuple[list[Path], list[str | None]]:
    texts: list[str | None] = list(sample_texts.quality_sample())
    sample = write_texts(data / "chains" / "2024-01" / "sample" / "part-00000.parquet", texts)
    files = generate_corpus(data, subreddits=1, files_per_subreddit=1, rows_per_file=120, seed=7, long_share=0.2)
    table = pq.read_table(files[0])
    return [sample, *files], texts + table["text"].to_pylist()


@pytest.mark.slow
def test_fp32_equals_sentence_transformers_and_int8_stays_close(
    worker_bin: Path, settings: RedisSettings, transport: RedisTransport, redis_client: redis.Redis, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    files, _ = _corpus(data)
    ns = settings.namespace
    outs = {}
    for precision in ("fp32", "int8"):
        redis_client.flushdb()
        enqueue_files(transport, data, files, id_column="id")
        out = tmp_path / f"out-{precision}"
        cmd = worker_cmd(worker_bin, settings, data, "--burst", "--precision", precision, "--output-root", str(out))
        proc = run_worker(cmd)
        assert proc.returncode == 0, proc.stderr
        assert stats(redis_client, ns)["done"] == len(files), proc.stderr
        outs[precision] = out
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(default_model_dir()), device="cpu")
    fp32_cos, int8_cos, truncated = [], [], 0
    for f in files:
        rel = f.relative_to(data).as_posix().replace("chains/", "embeddings/", 1)
        src = pq.read_table(f)["text"].to_pylist()
        got32, got8 = embeddings_by_row(outs["fp32"] / rel), embeddings_by_row(outs["int8"] / rel)
        rows = sorted(got32)
        assert rows == [i for i, t in enumerate(src) if t is not None]
        ref = st.encode([src[i] for i in rows], normalize_embeddings=True, batch_size=32)
        fp32_cos += [float(ref[k] @ got32[r]) for k, r in enumerate(rows)]
        int8_cos += [float(ref[k] @ got8[r]) for k, r in enumerate(rows)]
        meta = output_meta(outs["fp32"] / rel)
        truncated += int(meta["embedfleet.rows_truncated"])
        assert output_meta(outs["int8"] / rel)["embedfleet.precision"] == "int8"
        assert meta["embedfleet.model_id"] == model_id(default_model_dir())
    assert truncated >= 30, "the corpus must include texts beyond 256 tokens"
    assert min(fp32_cos) >= 0.9999, f"fp32 min cosine {min(fp32_cos):.6f}"
    assert float(np.mean(int8_cos)) >= 0.99, f"int8 mean cosine {np.mean(int8_cos):.4f}"


def test_bad_input_is_dead_lettered_with_a_reason_naming_the_file(
    worker_bin: Path, settings: RedisSettings, transport: RedisTransport, redis_client: redis.Redis, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    folder = data / "chains" / "2024-01" / "bad"
    folder.mkdir(parents=True)
    (folder / "corrupt.parquet").write_bytes(b"PAR1 definitely not parquet PAR1")
    pq.write_table(pa.table({"body": ["x"]}), folder / "nocolumn.parquet")
    pq.write_table(pa.table({"text": [1, 2]}), folder / "wrongtype.parquet")
    raw = pa.array([b"fine", b"bad \xff byte", None], pa.binary()).view(pa.string())
    pq.write_table(pa.table({"text": raw}), folder / "latin1.parquet")
    outside = tmp_path / "outside"
    write_texts(outside / "secret.parquet", ["secret"])
    (folder / "escape.parquet").symlink_to(outside / "secret.parquet")
    files = sorted(folder.iterdir())
    enqueue_files(transport, data, files)
    proc = run_worker(worker_cmd(worker_bin, settings, data, "--burst", "--embedder", "hash"))
    assert proc.returncode == 0, proc.stderr
    dead = dead_letters(redis_client, settings.namespace)
    base = "chains/2024-01/bad/"
    assert dead[base + "corrupt.parquet"].startswith(base + "corrupt.parquet: not a readable parquet file")
    assert dead[base + "nocolumn.parquet"] == base + 'nocolumn.parquet: missing column "text" (columns: body)'
    assert "has type Int64, expected a string or binary column" in dead[base + "wrongtype.parquet"]
    assert dead[base + "escape.parquet"] == base + "escape.parquet: resolves outside its root (symlink out)"
    assert base + "latin1.parquet" not in dead
    meta = output_meta(data / "embeddings" / "2024-01" / "bad" / "latin1.parquet")
    assert (meta["embedfleet.rows_invalid_utf8"], meta["embedfleet.rows_embedded"]) == ("1", "2")
    assert stats(redis_client, settings.namespace)["dead"] == 4


def test_lanes_are_served_in_priority_order(
    worker_bin: Path, settings: RedisSettings, transport: RedisTransport, redis_client: redis.Redis, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    small = write_texts(data / "chains" / "2024-01" / "l" / "small.parquet", ["a"])
    big = write_texts(data / "chains" / "2024-01" / "l" / "big.parquet", ["b", "c"])
    enqueue_files(transport, data, [small])
    enqueue_files(transport, data, [big], lane="gpu")
    only_default = run_worker(worker_cmd(worker_bin, settings, data, "--burst", "--embedder", "hash"))
    assert only_default.returncode == 0, only_default.stderr
    assert [e["path"] for e in events(redis_client, settings.namespace) if e["type"] == "job_done"] == [
        "chains/2024-01/l/small.parquet"
    ], "a worker without the gpu lane leaves its jobs alone"
    redis_client.flushdb()
    enqueue_files(transport, data, [small])
    enqueue_files(transport, data, [big], lane="gpu")
    both = run_worker(worker_cmd(worker_bin, settings, data, "--burst", "--embedder", "hash", "--lanes", "gpu,default"))
    assert both.returncode == 0, both.stderr
    done = [e["path"] for e in events(redis_client, settings.namespace) if e["type"] in ("job_done", "job_skipped")]
    assert done == ["chains/2024-01/l/big.parquet", "chains/2024-01/l/small.parquet"]


def test_a_missing_onnx_runtime_is_a_clear_error(worker_bin: Path, settings: RedisSettings, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    proc = run_worker(worker_cmd(worker_bin, settings, tmp_path / "data"), ORT_DYLIB_PATH=str(tmp_path / "nope.so"))
    assert proc.returncode == 2
    assert "ORT_DYLIB_PATH" in proc.stderr and "is not a file" in proc.stderr


def test_cuda_fails_loudly_where_it_is_unavailable(worker_bin: Path, settings: RedisSettings, tmp_path: Path) -> None:
    if shutil.which("nvidia-smi") and subprocess.run(["nvidia-smi"], capture_output=True).returncode == 0:
        pytest.skip("a CUDA GPU is present: the loud failure is for machines without one")
    (tmp_path / "data").mkdir()
    proc = run_worker(worker_cmd(worker_bin, settings, tmp_path / "data", "--device", "cuda"))
    assert proc.returncode == 2, proc.stderr
    assert "--device cuda" in proc.stderr and "CUDA" in proc.stderr


def test_bad_flags_exit_2_with_the_reason(worker_bin: Path, settings: RedisSettings, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    cases = {
        ("--max-open-files", "10"): "below the minimum",
        ("--max-memory", "lots"): "not a size",
        ("--lanes", ","): "names no lane",
    }
    for args, message in cases.items():
        proc = run_worker(worker_cmd(worker_bin, settings, tmp_path / "data", *args))
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)
    no_root = run_worker([str(worker_bin), "--redis-url", "redis://127.0.0.1:1/0"])
    assert no_root.returncode == 2 and "--data-root" in no_root.stderr
