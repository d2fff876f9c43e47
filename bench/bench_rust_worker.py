"""Rust worker throughput (fp32 and int8) against bare ``SentenceTransformer.encode``
on CPU, same texts, same run, 2 threads each.

The texts are the sample corpus's distinct texts, each once (deduplication
would flatter the worker). The baseline is ``encode(texts, batch_size=32,
normalize_embeddings=True)`` in this process with ``torch.set_num_threads(2)``,
timed after a warm-up. The worker is the release binary, ``--burst --threads
2``, over a private redis-server; its time is the whole process, start-up and
model load included, so the ratios are conservative. Runs alternate baseline
and worker; every ratio is per pair (median, min–max). CPU-time ratios are
the verdicts (other processes on a shared box slow wall time, not CPU time);
wall ratios are shown beside them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench import matmul_peak
from bench.child import run_measured
from bench.report import spread
from corpus.generate import generate_corpus
from models.ort import ort_library
from models.source import default_model_dir, model_id
from workers.device import cpu_has_vnni

ROOT = Path(__file__).resolve().parent.parent
THREADS = 2
ONNX_DIR = ROOT / "models" / "onnx" / "minilm"
TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache" / "embedfleet" / "target")
BINARY = TARGET / "release" / "embedfleet-worker"


@dataclass(frozen=True)
class Spec:
    subreddits: int
    files_per_subreddit: int
    rows_per_file: int
    repeats: int


FULL = Spec(subreddits=2, files_per_subreddit=3, rows_per_file=750, repeats=3)
"""About 3,000 distinct texts: a worker runs for days, so its throughput is a
steady-state figure; with 1,000 texts (4 s of int8 work) its start-up, a
quarter second, was a tenth of the time measured."""
SMOKE = Spec(subreddits=1, files_per_subreddit=1, rows_per_file=20, repeats=1)


@dataclass(frozen=True)
class Measure:
    wall: float
    cpu: float
    rss_mib: float = float("nan")


# -- set-up -----------------------------------------------------------------------


@contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not installed: run `make setup`")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.025)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def unique_corpus(spec: Spec, work: Path) -> tuple[Path, list[Path], list[str]]:
    """The sample corpus's distinct texts, each once, over as many files."""
    sample = generate_corpus(
        work / "sample",
        subreddits=spec.subreddits,
        files_per_subreddit=spec.files_per_subreddit,
        rows_per_file=spec.rows_per_file,
        seed=11,
    )
    texts: list[str] = []
    for f in sample:
        texts += [t for t in pq.read_table(f, columns=["text"])["text"].to_pylist() if t is not None]
    distinct = list(dict.fromkeys(texts))
    root = work / "unique"
    folder = root / "chains" / "2024-01" / "unique"
    folder.mkdir(parents=True)
    files = []
    for i in range(len(sample)):
        part = distinct[i :: len(sample)]
        path = folder / f"part-{i:05d}.parquet"
        pq.write_table(pa.table({"id": [f"u{i}-{j}" for j in range(len(part))], "text": part}), path)
        files.append(path)
    return root, files, distinct


def token_counts(texts: list[str]) -> list[int]:
    """Tokens the model sees per text (truncated at 256), as both sides count them."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(ONNX_DIR / "tokenizer.json"))
    return [len(e.ids) for e in tok.encode_batch(texts)]


# -- the two sides ------------------------------------------------------------------
class RustRunner:
    """Runs the release binary over a queue of the corpus's files."""

    def __init__(self, url: str, data: Path, files: list[Path], work: Path) -> None:
        self.url, self.data, self.files, self.work = url, data, files, work
        self.runs = 0
        self.env = {**os.environ, "ORT_DYLIB_PATH": str(ort_library()), "EMBEDFLEET_MODEL_DIR": str(ONNX_DIR)}

    def out(self, precision: str) -> Path:
        return self.work / f"out-{precision}"

    def __call__(self, precision: str) -> Measure:
        from bus.redis_transport import RedisTransport
        from bus.settings import RedisSettings
        from workers.testing import enqueue_all, jobs_for

        self.runs += 1
        ns = f"benchrust{self.runs}"
        out = self.out(precision)
        shutil.rmtree(out, ignore_errors=True)
        bus = RedisTransport.from_settings(RedisSettings.from_url(self.url, namespace=ns))
        enqueue_all(bus, jobs_for(self.data, self.files, model_id(ONNX_DIR), id_column="id"))
        cmd = [str(BINARY), "--redis-url", self.url, "--namespace", ns, "--input-root", str(self.data),
               "--output-root", str(out), "--burst", "--threads", str(THREADS), "--precision", precision,
               "--log-level", "WARNING"]  # fmt: skip
        r = run_measured(cmd, env=self.env)
        if r.returncode != 0:
            raise RuntimeError(f"embedfleet-worker exited {r.returncode}")
        return Measure(r.wall_s, r.cpu_s, r.peak_rss_mib)


class Baseline:
    """Bare sentence-transformers on the CPU, 2 threads, fp32."""

    def __init__(self, texts: list[str]) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(THREADS)
        self.texts = texts
        self.model = SentenceTransformer(str(default_model_dir()), device="cpu")
        self.model.encode(texts[:32], batch_size=32)

    def __call__(self) -> Measure:
        t0, c0 = time.perf_counter(), time.process_time()
        self.model.encode(self.texts, batch_size=32, normalize_embeddings=True)
        return Measure(time.perf_counter() - t0, time.process_time() - c0)

    def reference(self) -> np.ndarray:
        return np.asarray(self.model.encode(self.texts, batch_size=32, normalize_embeddings=True))


def compare(n: int, worker: Callable[[], Measure], bare: Callable[[], Measure]) -> dict[str, list[float]]:
    """Alternate baseline and worker ``n`` times; per-pair figures."""
    res: dict[str, list[float]] = {k: [] for k in ("bare_s", "worker_s", "ratio_wall", "ratio_cpu", "rss")}
    for i in range(n):
        if i % 2 == 0:
            b = bare()
            w = worker()
        else:
            w = worker()
            b = bare()
        res["bare_s"].append(b.wall)
        res["worker_s"].append(w.wall)
        res["ratio_wall"].append(b.wall / w.wall)
        res["ratio_cpu"].append(b.cpu / w.cpu)
        res["rss"].append(w.rss_mib)
    return res


def cosines(out: Path, files: list[Path], data: Path, texts: list[str], ref: np.ndarray) -> np.ndarray:
    """Cosine of every worker embedding with the baseline's for the same text."""
    where = {t: i for i, t in enumerate(texts)}
    got = []
    for f in files:
        rel = f.relative_to(data).as_posix().replace("chains/", "embeddings/", 1)
        src = pq.read_table(f, columns=["text"])["text"].to_pylist()
        t = pq.read_table(out / rel)
        emb = np.asarray(t["embedding"].combine_chunks().flatten().to_numpy()).reshape(-1, 384)
        got += [float(emb[k] @ ref[where[src[r]]]) for k, r in enumerate(t["row"].to_pylist())]
    return np.asarray(got)


# -- the benchmark --------------------------------------------------------------------
def run(smoke: bool) -> dict[str, Any]:
    if not BINARY.is_file() or not (ONNX_DIR / "embedfleet_model.json").is_file():
        raise RuntimeError("build the worker and the ONNX export first: `make setup`")
    spec = SMOKE if smoke else FULL
    with tempfile.TemporaryDirectory(prefix="bench-rust-") as tmp, redis_server(Path(tmp)) as url:
        return measure(spec, Path(tmp), url, smoke)


def int8_variant() -> str:
    """Which int8 model the worker runs here (its rule: ``model::variant_for``)."""
    variants = json.loads((ONNX_DIR / "embedfleet_model.json").read_text())["variants"]
    if "int8_vnni" in variants and cpu_has_vnni():
        return "int8 weights, U8S8 kernels: this CPU has VNNI"
    why = "this CPU has no VNNI" if not cpu_has_vnni() else "the export has no VNNI variant"
    return f"uint8 weights, U8U8 kernels: {why}"


def row(label: str, counts: list[int], peak: matmul_peak.GemmPeak, res: dict[str, list[float]]) -> list[Any]:
    rows, tokens = len(counts), sum(counts)
    mean, sq = matmul_peak.token_moments(counts)

    def share(seconds: list[float]) -> str:
        return spread([100 * matmul_peak.peak_share(rows / t, mean, peak.median, sq) for t in seconds], "{:.1f}")

    return [
        label,
        spread([rows / t for t in res["worker_s"]], "{:.0f}"),
        spread([tokens / t for t in res["worker_s"]], "{:.0f}"),
        share(res["worker_s"]),
        spread([rows / t for t in res["bare_s"]], "{:.0f}"),
        share(res["bare_s"]),
        spread(res["ratio_cpu"]),
        spread(res["ratio_wall"]),
        spread(res["rss"], "{:.0f}"),
    ]


def verdict(test: str, res: dict[str, list[float]], floor: float) -> dict[str, str]:
    cpu, wall = float(np.median(res["ratio_cpu"])), float(np.median(res["ratio_wall"]))
    return {
        "test": test,
        "expected": f">= {floor}x",
        "measured": f"{cpu:.2f}x CPU time (wall {wall:.2f}x)",
        "status": "pass" if cpu >= floor else "fail",
    }


def measure(spec: Spec, work: Path, url: str, smoke: bool) -> dict[str, Any]:
    data, files, texts = unique_corpus(spec, work)
    counts = token_counts(texts)
    bare = Baseline(texts)
    rust = RustRunner(url, data, files, work)
    peaks = matmul_peak.measure_peak(THREADS, n=1024, repeats=3)
    fp32 = compare(spec.repeats, lambda: rust("fp32"), bare)
    peaks += matmul_peak.measure_peak(THREADS, n=1024, repeats=3)
    int8 = compare(spec.repeats, lambda: rust("int8"), bare)
    peaks += matmul_peak.measure_peak(THREADS, n=1024, repeats=3)
    peak = matmul_peak.best(matmul_peak.pooled(peaks))
    ref = bare.reference()
    c32 = cosines(rust.out("fp32"), files, data, texts, ref)
    c8 = cosines(rust.out("int8"), files, data, texts, ref)
    plan = [
        verdict("Rust worker fp32 vs bare sentence-transformers (CPU, 2 threads)", fp32, 1.4),
        verdict("Rust worker int8 vs bare sentence-transformers (CPU, 2 threads)", int8, 3.0),
        {"test": "Rust fp32 embeddings equal sentence-transformers", "expected": "min cosine >= 0.9999",
         "measured": f"{c32.min():.6f}", "status": "pass" if c32.min() >= 0.9999 else "fail"},
        {"test": "Rust int8 embeddings close to sentence-transformers", "expected": "mean cosine >= 0.99",
         "measured": f"{c8.mean():.4f} (1st percentile {np.percentile(c8, 1):.4f})",
         "status": "pass" if c8.mean() >= 0.99 else "fail"},
    ]  # fmt: skip
    notes = [
        f"{len(texts)} distinct texts ({sum(counts)} tokens after truncation at 256) in {len(files)} files; "
        f"{spec.repeats} alternating pair(s) per precision. Worker time is the whole process (start-up, "
        "model load, Redis, parquet read and write included); the baseline is `encode` alone after warm-up. "
        "% of fp32 GEMM peak: model FLOPs (`bench.matmul_peak`: 2 × 10.6M matmul weights × tokens + attention, "
        f"no padding) per second over this machine's fp32 GEMM peak at {THREADS} threads, {peak.median:.1f} GFLOP/s "
        f"({peak.backend}, n={peak.n}, median of {len(peak.samples)} samples taken before, between and after the "
        "comparisons); int8 is held to the same fp32 peak, so it may pass 100%.",
    ]
    if smoke:
        notes.append("Smoke run: a handful of texts, start-up dominates; the ratios are not meaningful.")
    return {
        "title": "Rust worker (embedfleet-worker, ONNX Runtime)",
        "tables": [
            {
                "caption": "Throughput against bare SentenceTransformer.encode, same texts, same run",
                "columns": [
                    "worker",
                    "texts/s",
                    "tokens/s",
                    "% of fp32 GEMM peak",
                    "bare encode texts/s",
                    "bare % of fp32 GEMM peak",
                    "ratio, CPU time",
                    "ratio, wall",
                    "worker peak RSS (MiB)",
                ],
                "rows": [
                    row("Rust fp32", counts, peak, fp32),
                    row(f"Rust int8 ({int8_variant()})", counts, peak, int8),
                ],
            }
        ],
        "plan": plan,
        "notes": " ".join(notes),
    }
