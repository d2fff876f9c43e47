"""Distinct texts across a real mixed fleet: a Python and a Rust worker (both
fp32, the real model) over a thread-tree chain corpus copied into ten
suffixes. Each distinct text costs one model call in the fleet, even while
the two workers hold copies of the same file at once; new files of known
texts cost none; and every output equals a run with reuse switched off
(docs/reuse.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import redis

from bus.redis_transport import RedisTransport
from bus.settings import RedisSettings
from corpus import ThreadCorpusSpec, generate_thread_corpus
from tests.support import ROOT
from tests.support.rust_worker import (
    RUN_TIMEOUT_S,
    embeddings_by_row,
    enqueue_files,
    python_env,
    stats,
    wait_registered,
    worker_cmd,
    worker_env,
)

pytestmark = pytest.mark.slow

COPIES = 10


def fleet_run(
    binary: Path, settings: RedisSettings, r: redis.Redis, data: Path, out: Path, tag: str, *flags: str
) -> None:
    """One Python and one Rust worker (fp32, one thread each) drain the queue
    together; both load their models before either takes a job."""
    ns = settings.namespace
    url = f"redis://{settings.host}:{settings.port}/{settings.db}"
    common = ["--redis-url", url, "--namespace", ns, "--input-root", str(data), "--output-root", str(out),
              "--burst", "--precision", "fp32", "--threads", "1", *flags]  # fmt: skip
    python = [sys.executable, "-m", "workers.mps", *common, "--device", "cpu", "--worker-id", f"py-{tag}"]
    rust = [*worker_cmd(binary, settings, data)[:1], *common, "--worker-id", f"rs-{tag}"]
    r.hset(f"{ns}:control", "paused", "1")
    procs = [
        subprocess.Popen(python, cwd=ROOT, env=python_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True),
        subprocess.Popen(rust, env=worker_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True),
    ]  # fmt: skip
    try:
        wait_registered(r, ns, [f"py-{tag}", f"rs-{tag}"], procs)
        r.hdel(f"{ns}:control", "paused")
        for p in procs:
            _, err = p.communicate(timeout=RUN_TIMEOUT_S)
            assert p.returncode == 0, err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)


def distinct_texts(files: list[Path]) -> int:
    texts: set[str] = set()
    for f in files:
        texts.update(t for t in pq.read_table(f, columns=["text"])["text"].to_pylist() if t is not None)
    return len(texts)


def test_a_mixed_fleet_embeds_each_distinct_text_once_and_outputs_equal_a_run_without_reuse(
    worker_bin: Path, settings: RedisSettings, transport: RedisTransport, redis_client: redis.Redis, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    spec = ThreadCorpusSpec(suffixes=1, subreddits=2, files_per_subreddit=2, threads_per_subreddit=6, seed=4,
                            copies=COPIES)  # fmt: skip
    corpus = generate_thread_corpus(data, spec)
    files = sorted(corpus.paths)
    distinct = distinct_texts(files)
    assert len(files) == COPIES * 4 and corpus.rows > 3 * distinct
    # Each file's ten copies one after the other: the two workers claim copies
    # of the same file at the same moment.
    by_name: dict[str, list[Path]] = {}
    for f in files:
        by_name.setdefault(f"{f.parent.name}/{f.name}", []).append(f)
    order = [f for name in sorted(by_name) for f in by_name[name]]
    enqueue_files(transport, data, order)
    out = tmp_path / "out"
    fleet_run(worker_bin, settings, redis_client, data, out, "a")
    s = stats(redis_client, settings.namespace)
    assert s["done"] == len(files) and s.get("dead", 0) == 0
    assert s["model_calls"] <= 1.02 * distinct, f"{s['model_calls']} model calls for {distinct} distinct texts"
    assert s["rows_reused"] > 0 and s["rows"] == corpus.rows
    kinds = {pq.read_metadata(p).metadata[b"embedfleet.worker_kind"] for p in out.rglob("*.parquet")}
    assert kinds == {b"python", b"rust"}

    # New files holding only known texts: no model call at all.
    known = data / "chains" / "known"
    first = sorted(by_name)[:2]
    for name in first:
        (known / name).parent.mkdir(parents=True, exist_ok=True)
        (known / name).write_bytes(by_name[name][0].read_bytes())
    enqueue_files(transport, data, sorted(known.rglob("*.parquet")))
    fleet_run(worker_bin, settings, redis_client, data, out, "b")
    again = stats(redis_client, settings.namespace)
    assert again["done"] == len(files) + 2 and again["model_calls"] == s["model_calls"]

    # The same files with reuse switched off: equal outputs, row by row.
    redis_client.flushdb()
    plain = tmp_path / "plain"
    single = [by_name[name][0] for name in sorted(by_name)]
    enqueue_files(transport, data, single)
    fleet_run(worker_bin, settings, redis_client, data, plain, "c", "--no-reuse")
    assert not list(redis_client.scan_iter(f"{settings.namespace}:r:*"))
    worst = 1.0
    for f in single:
        rel = f.relative_to(data).as_posix().replace("chains/", "embeddings/", 1)
        with_reuse, without = embeddings_by_row(out / rel), embeddings_by_row(plain / rel)
        assert with_reuse.keys() == without.keys()
        worst = min(worst, min(float(np.dot(with_reuse[k], without[k])) for k in with_reuse))
    assert worst >= 0.99999, f"an output differs from the run without reuse: cosine {worst}"
