"""The data path at accelerator rates (issue 22): the tokenizer's fast path
equals the library, the simulated device's outputs go through the same
writer and bus as real ones, the pipelined path writes the same bytes as the
unpipelined one, and a job taken over mid-pipeline leaves no partial output."""

from __future__ import annotations

import os
import random
import string
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from bus.errors import LeaseLost
from bus.messages import Job
from bus.redis_transport import RedisTransport
from bus.reuse import MemoryReuseStore
from bus.transport import Delivery
from corpus.generate import generate_corpus
from models.source import default_model_dir, model_id
from tests.support import ROOT
from workers.embedder import HashEmbedder
from workers.paths import DataRoots, fingerprint
from workers.pipeline import EmbedPipeline
from workers.readahead import WriteBehind
from workers.sim_embedder import SimulatedEmbedder, seed_vectors, seeds
from workers.st_embedder import ModelTokenizer
from workers.testing import enqueue_all, jobs_for
from workers.writer import Provenance

MODEL = "all-MiniLM-L6-v2@test"
NS = "eftest"
"""The namespace of the ``transport`` fixture (tests/conftest.py)."""
PROV = Provenance("python-test-1", "python", "cpu", "fp32", "0.1.0")


@pytest.fixture(scope="module")
def tokens() -> ModelTokenizer:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return ModelTokenizer.from_dir(default_model_dir())


def sample_texts(tmp: Path) -> list[str]:
    files = generate_corpus(tmp / "c", subreddits=4, files_per_subreddit=2, rows_per_file=200, seed=3)
    texts = [t for f in files for t in pq.read_table(f)["text"].to_pylist() if t is not None]
    rng = random.Random(7)
    alphabet = string.printable + "éü東😀\u00a0\x1c\x7f"
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(3000)]
    texts += ["", " ", "[CLS] hi", "hello [sep] you", "[MASK]", "a" * 150, "UPPER Case", "x##y", "don't", "3.14"]
    texts += ["$100 <b>", "a\tb", "~`|^", "[unused1]", "unaffable", "word " * 300, "ok " * 30_000]
    return texts


# -- the tokenizer's fast path ----------------------------------------------------
def test_fast_tokenization_equals_the_tokenizers_library(tokens: ModelTokenizer, tmp_path: Path) -> None:
    texts = sample_texts(tmp_path)
    assert tokens.fast is not None
    assert sum(1 for t in texts if tokens.fast.ids(t)) > 500, "the fast path takes the plain texts"
    ids, truncated = tokens.tokenize(texts)
    for text, got, cut in zip(texts, ids, truncated, strict=True):
        ref = tokens.tokenizer.encode(text).ids
        assert cut == (len(ref) > 256)
        assert got == (ref if len(ref) <= 256 else [*ref[:255], ref[-1]]), text[:80]


def test_texts_tokenized_ahead_are_taken_and_the_rest_tokenized(tokens: ModelTokenizer) -> None:
    tokens.prepare(["alpha beta", "gamma"])
    ids, _ = tokens.tokenize(["gamma", "delta", "alpha beta"])
    assert ids == [tokens.tokenizer.encode(t).ids for t in ["gamma", "delta", "alpha beta"]]
    assert "gamma" not in tokens._ready and "alpha beta" not in tokens._ready


# -- the simulated device ----------------------------------------------------------
def test_simulated_vectors_are_deterministic_unit_vectors() -> None:
    v = seed_vectors(seeds(["x", "y", "x"]))
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.array_equal(v[0], v[2]) and not np.array_equal(v[0], v[1])
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_the_simulated_device_costs_its_time_off_the_cpu(tokens: ModelTokenizer) -> None:
    emb = SimulatedEmbedder(MODEL, default_model_dir(), rows_per_second=2000)
    texts = [f"text number {i}" for i in range(200)]
    c0, t0 = time.process_time(), time.perf_counter()
    got = emb.encode(texts)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert wall >= 0.1 and cpu < wall, "200 rows at 2000 rows/s sleep 0.1 s"
    assert emb.sim.stats.rows == 200 and emb.sim.stats.busy_s == pytest.approx(0.1)
    assert np.array_equal(got.embeddings, seed_vectors(seeds(texts)))
    emb.sim.close()


# -- pipelined vs unpipelined --------------------------------------------------------
def corpus(tmp: Path, rows: int = 120, seed: int = 5) -> tuple[DataRoots, list[Job]]:
    files = generate_corpus(tmp / "in", subreddits=2, files_per_subreddit=2, rows_per_file=rows, seed=seed)
    roots = DataRoots.create(tmp / "in", tmp / "out")
    return roots, jobs_for(tmp / "in", files, MODEL, id_column="id")


def run_job(pipe: EmbedPipeline, job: Job) -> None:
    prepared = pipe.prepare(Delivery(job, job.lane, "1-0"))
    try:
        pipe.run(prepared, lambda: None)
    finally:
        prepared.close()


@pytest.mark.parametrize("reuse", [False, True], ids=["no-reuse", "reuse"])
def test_the_pipelined_path_writes_the_same_bytes_as_the_unpipelined_one(tmp_path: Path, reuse: bool) -> None:
    roots, jobs = corpus(tmp_path)
    outputs: dict[bool, list[bytes]] = {}
    for pipelined in (False, True):
        out = tmp_path / f"out-{pipelined}"
        r = DataRoots.create(roots.input_root, out)
        store = MemoryReuseStore() if reuse else None
        pipe = EmbedPipeline(r, HashEmbedder(MODEL), PROV, chunk_rows=16, reuse=store, pipelined=pipelined)
        for job in jobs:
            run_job(pipe, job)
        outputs[pipelined] = [(out / j.out).read_bytes() for j in jobs]
    assert outputs[True] == outputs[False]
    table = pq.read_table(tmp_path / "out-True" / jobs[0].out)
    assert table.num_rows > 16, "several chunks, so the writer thread wrote several row groups"


def test_a_job_taken_over_mid_pipeline_leaves_no_partial_output(tmp_path: Path) -> None:
    roots, jobs = corpus(tmp_path, rows=200)
    written = threading.Event()

    class SlowWrites(HashEmbedder):
        def encode(self, texts):  # type: ignore[no-untyped-def]
            written.set()
            return super().encode(texts)

    pipe = EmbedPipeline(roots, SlowWrites(MODEL), PROV, chunk_rows=8)
    calls = 0

    def checkpoint() -> None:
        nonlocal calls
        calls += 1
        if calls == 5:  # chunks are being read, embedded and written on three threads
            raise LeaseLost("another worker took the job over")

    prepared = pipe.prepare(Delivery(jobs[0], jobs[0].lane, "1-0"))
    try:
        with pytest.raises(LeaseLost):
            pipe.run(prepared, checkpoint)
    finally:
        prepared.close()
    assert written.is_set()
    left = [p for p in (roots.output_root).rglob("*") if p.is_file()]
    assert left == [], left
    live = [t.name for t in threading.enumerate() if t.name.startswith("write-")]
    assert live == [], "the writer thread is gone"


def test_a_write_error_reaches_the_caller() -> None:
    def write(item: int) -> None:
        if item == 2:
            raise OSError("disk full")

    sink: WriteBehind[int] = WriteBehind(write, depth=1)
    with pytest.raises(OSError, match="disk full"):
        for i in range(10):
            sink.put(i)
        sink.finish()
    sink.close()


# -- through the bus, as a process -------------------------------------------------
def test_the_simulated_worker_writes_through_the_same_writer_and_bus(
    transport: RedisTransport, redis_client: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    files = generate_corpus(tmp_path / "data", subreddits=2, files_per_subreddit=2, rows_per_file=40, seed=9)
    data = tmp_path / "data"
    model = model_id()
    transport.ensure_lanes(["default"])
    assert enqueue_all(transport, jobs_for(data, files, model, id_column="id")) == len(files)
    cmd = [sys.executable, "-m", "workers.mps", "--redis-url", redis_url, "--namespace", NS, "--data-root",
           str(data), "--embedder", "simulated", "--sim-rows-per-second", "20000", "--burst"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(redis_client.hget(f"{NS}:stats", "done") or 0) == len(files)
    for f in files:
        out = data / "embeddings" / f.relative_to(data / "chains")
        table = pq.read_table(out)
        assert table.schema.names == ["row", "id", "embedding"]
        assert table.schema.field("embedding").type == pa.list_(pa.float32(), 384)
        meta = {k.decode(): v.decode() for k, v in (pq.read_metadata(out).metadata or {}).items()}
        assert meta["embedfleet.device"] == "sim" and meta["embedfleet.input_fingerprint"] == fingerprint(f)
        src = pq.read_table(f)["text"].to_pylist()
        texts = [src[i] for i in table["row"].to_pylist()]
        got = np.stack(table["embedding"].to_numpy(zero_copy_only=False))
        cosine = (got * seed_vectors(seeds(texts))).sum(axis=1)
        assert cosine.min() > 0.99999  # exact, or the reuse store's binary16 copy of a text another job stored
