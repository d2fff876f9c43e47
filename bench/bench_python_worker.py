"""Python worker throughput against bare ``SentenceTransformer.encode`` on the
same texts in the same run.

Three comparisons, each repeated with the worker and the baseline alternating
(ratios are per pair; medians with min–max):

1. fp32, a corpus with no duplicate texts: what reading, cleaning, queueing,
   writing and bookkeeping cost (claim: the worker keeps >= 0.95x of bare
   encode);
2. bf16 autocast (where the CPU has AVX512-BF16 or AMX) against fp32 bare
   encode on the same corpus (claim: >= 1.4x), with its quality gate;
3. fp32 on the sample corpus itself, whose chains repeat their ancestors'
   texts: the worker embeds each text once per job, so it should be ahead of
   bare encode by about the deduplication ratio.

The worker runs in this process over a private redis-server (the in-memory
bus where none is installed) with the model loaded once; the baseline calls
``encode(texts, batch_size=32, normalize_embeddings=True)`` on the same model
object. A last run of ``python -m workers.mps --burst`` as its own process
gives the worker's peak RSS.
"""

from __future__ import annotations

import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from bench import matmul_peak
from bench.child import run_measured
from bench.report import spread
from bus.memory import MemoryTransport
from corpus.generate import generate_corpus
from workers.device import cpu_has_fast_bf16
from workers.paths import DataRoots
from workers.pipeline import EmbedPipeline
from workers.runtime import Worker, WorkerConfig
from workers.st_embedder import SentenceTransformerEmbedder
from workers.testing import enqueue_all, jobs_for, memory_backlog
from workers.writer import Provenance

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds and CPU seconds of this process (all its threads)."""

    wall: float
    cpu: float


@dataclass(frozen=True)
class Spec:
    subreddits: int
    files_per_subreddit: int
    rows_per_file: int
    repeats: int


FULL = Spec(subreddits=2, files_per_subreddit=1, rows_per_file=600, repeats=3)
"""Two jobs of 600 rows: a job is the worker's unit of sorting and batching
(real parts hold up to 200k rows), so files of a few dozen rows would measure
per-job overhead rather than throughput."""
THREADS = 1
"""Intra-op threads on both sides. This shared 2-core machine is usually
oversubscribed, and then two OpenMP threads stall at every barrier (measured:
a forward pass of 8 tokens took 170 ms with 2 threads, 40 ms with 1), which
swamps what is being compared. Both sides always use the same setting."""
SMOKE = Spec(subreddits=1, files_per_subreddit=2, rows_per_file=15, repeats=1)
"""Smoke: tiny, fp32 only, no second model load and no separate worker process."""


# -- corpora --------------------------------------------------------------------
def per_job_dedup_ratio(files: list[Path]) -> float:
    """Rows over the texts a worker embeds: it deduplicates within each job (file)."""
    rows = distinct = 0
    for f in files:
        texts = texts_of([f])
        rows += len(texts)
        distinct += len(set(texts))
    return rows / max(1, distinct)


def token_dedup_ratio(emb: SentenceTransformerEmbedder, files: list[Path]) -> float:
    """Tokens of every row over tokens of the texts a worker embeds (per job):
    the compute that deduplication saves. Repeated texts in chains are mostly
    short replies, so this is below the row ratio."""
    rows = distinct = 0
    for f in files:
        texts = texts_of([f])
        ids, _ = emb.tokenize(texts)
        rows += sum(len(x) for x in ids)
        seen = dict.fromkeys(texts)
        ids_distinct, _ = emb.tokenize(list(seen))
        distinct += sum(len(x) for x in ids_distinct)
    return rows / max(1, distinct)


def texts_of(files: list[Path]) -> list[str]:
    out: list[str] = []
    for f in files:
        out += [t for t in pl.read_parquet(f, columns=["text"])["text"].to_list() if t is not None]
    return out


def unique_corpus(root: Path, texts: list[str], n_files: int) -> list[Path]:
    """The distinct texts, each once, over ``n_files`` files."""
    distinct = list(dict.fromkeys(texts))
    folder = root / "chains" / "2024-01" / "unique"
    folder.mkdir(parents=True)
    files = []
    for i in range(n_files):
        part = distinct[i::n_files]
        path = folder / f"part-{i:05d}.parquet"
        pq.write_table(pa.table({"id": [f"u{i}-{j}" for j in range(len(part))], "text": part}), path)
        files.append(path)
    return files


# -- the bus ------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def redis_server(workdir: Path) -> Iterator[str | None]:
    exe = shutil.which("redis-server")
    if exe is None:
        yield None
        return
    import redis

    port = _free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                time.sleep(0.025)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def make_bus(url: str | None, namespace: str) -> tuple[Any, Callable[[list[str]], int]]:
    if url is None:
        t = MemoryTransport()
        return t, memory_backlog(t)
    from bus.redis_transport import RedisTransport
    from bus.settings import RedisSettings
    from workers.backlog import lanes_backlog

    rt = RedisTransport.from_settings(RedisSettings.from_url(url, namespace=namespace))
    return rt, lanes_backlog(rt)


# -- measurements ---------------------------------------------------------------
class Runner:
    """Runs the worker and the baseline on prepared corpora."""

    def __init__(self, work: Path, url: str | None) -> None:
        self.work = work
        self.url = url
        self.runs = 0

    def worker(self, emb: SentenceTransformerEmbedder, data: Path, files: list[Path]) -> Timing:
        """From enqueueing the jobs to the burst worker's exit."""
        self.runs += 1
        out = self.work / f"out-{self.runs}"
        bus, backlog = make_bus(self.url, f"bench{self.runs}")
        roots = DataRoots.create(data, out)
        prov = Provenance(f"bench-{self.runs}", "python", emb.device, emb.precision, "bench")
        cfg = WorkerConfig(
            worker_id=f"bench-{self.runs}", burst=True, handle_signals=False, block_ms=50, device=emb.device
        )
        w = Worker(bus, EmbedPipeline(roots, emb, prov), cfg, backlog=backlog)
        t0, c0 = time.perf_counter(), time.process_time()
        enqueue_all(bus, jobs_for(data, files, emb.model_id, id_column="id"))
        w.run()
        took = Timing(time.perf_counter() - t0, time.process_time() - c0)
        shutil.rmtree(out)
        return took

    @staticmethod
    def bare(emb: SentenceTransformerEmbedder, texts: list[str]) -> Timing:
        t0, c0 = time.perf_counter(), time.process_time()
        emb.model.encode(texts, batch_size=32, normalize_embeddings=True)
        return Timing(time.perf_counter() - t0, time.process_time() - c0)


def compare(n: int, worker: Callable[[], Timing], bare: Callable[[], Timing]) -> dict[str, list[float]]:
    """Alternate baseline and worker ``n`` times; per-pair times and ratios."""
    res: dict[str, list[float]] = {k: [] for k in ("bare_s", "worker_s", "ratio_wall", "ratio_cpu")}
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
    return res


@dataclass(frozen=True)
class Work:
    """What one comparison's texts cost: their count, token moments (mean and
    mean square, truncated as the model does) and the fp32 GEMM peak."""

    rows: int
    tokens: tuple[float, float]
    peak: matmul_peak.GemmPeak

    def share(self, seconds: list[float]) -> str:
        """Model FLOP/s over the fp32 GEMM peak, in %, for each timing."""
        mean, sq = self.tokens
        peak = self.peak.median
        return spread([100 * matmul_peak.peak_share(self.rows / s, mean, peak, sq) for s in seconds], "{:.1f}")


def token_moments(emb: SentenceTransformerEmbedder, texts: list[str]) -> tuple[float, float]:
    tok = emb.model.tokenizer(texts, truncation=True, max_length=emb.model.max_seq_length)
    return matmul_peak.token_moments([len(ids) for ids in tok["input_ids"]])


def table_row(label: str, w: Work, res: dict[str, list[float]], rss: str) -> list[Any]:
    return [
        label,
        w.rows,
        spread([w.rows / s for s in res["bare_s"]], "{:.0f}"),
        spread([w.rows / s for s in res["worker_s"]], "{:.0f}"),
        spread([w.rows * w.tokens[0] / s for s in res["worker_s"]], "{:.0f}"),
        w.share(res["bare_s"]),
        w.share(res["worker_s"]),
        spread(res["ratio_wall"]),
        spread(res["ratio_cpu"]),
        rss,
    ]


def verdict(test: str, res: dict[str, list[float]], floor: float, expected: str) -> dict[str, str]:
    cpu, wall = float(np.median(res["ratio_cpu"])), float(np.median(res["ratio_wall"]))
    return {
        "test": test,
        "expected": expected,
        "measured": f"{cpu:.2f}x CPU time (wall {wall:.2f}x)",
        "status": "pass" if cpu >= floor else "fail",
    }


def equality(emb: SentenceTransformerEmbedder, texts: list[str]) -> float:
    got = emb.encode(texts).embeddings
    ref = np.asarray(emb.model.encode(texts, normalize_embeddings=True))
    return float((got * ref).sum(axis=1).min())


def peak_rss_of_cli(
    url: str | None, data: Path, files: list[Path], model_id: str, out: Path, precision: str = "fp32"
) -> tuple[float, float]:
    """Peak RSS (MiB) and wall seconds of ``python -m workers.mps --burst`` as its own process."""
    if url is None:
        return float("nan"), float("nan")
    ns = f"benchcli-{precision}"
    bus, _ = make_bus(url, ns)
    enqueue_all(bus, jobs_for(data, files, model_id, id_column="id"))
    cmd = [
        sys.executable,
        "-m",
        "workers.mps",
        "--redis-url",
        url,
        "--namespace",
        ns,
        "--precision",
        precision,
        "--input-root",
        str(data),
        "--output-root",
        str(out / precision),
        "--burst",
        "--threads",
        str(THREADS),
        "--log-level",
        "WARNING",
    ]
    r = run_measured(cmd, cwd=ROOT)
    if r.returncode != 0:
        raise RuntimeError(f"python -m workers.mps exited {r.returncode}")
    return r.peak_rss_mib, r.wall_s


# -- the benchmark ------------------------------------------------------------------
def run(smoke: bool) -> dict[str, Any]:
    spec = SMOKE if smoke else FULL
    with tempfile.TemporaryDirectory(prefix="bench-pyworker-") as tmp, redis_server(Path(tmp)) as url:
        return measure(spec, Path(tmp), url, smoke)


@dataclass
class Corpora:
    """The sample corpus; its distinct texts once each; and the sample corpus
    with every file's rows written twice. Chains in the sample repeat mostly
    short replies, which cost little to embed twice, so the doubled corpus is
    the one that shows what deduplication saves."""

    sample_root: Path
    sample_files: list[Path]
    dup_root: Path
    dup_files: list[Path]
    dup_texts: list[str]
    uniq_root: Path
    uniq_files: list[Path]
    uniq_texts: list[str]

    @classmethod
    def build(cls, spec: Spec, work: Path) -> Corpora:
        sample_root, dup_root, uniq_root = work / "sample", work / "doubled", work / "unique"
        sample = generate_corpus(
            sample_root,
            subreddits=spec.subreddits,
            files_per_subreddit=spec.files_per_subreddit,
            rows_per_file=spec.rows_per_file,
            seed=1,
        )
        dup_files = [doubled(f, dup_root / f.relative_to(sample_root)) for f in sample]
        uniq_files = unique_corpus(uniq_root, texts_of(sample), len(sample))
        return cls(
            sample_root, sample, dup_root, dup_files, texts_of(dup_files), uniq_root, uniq_files, texts_of(uniq_files)
        )


def doubled(src: Path, dst: Path) -> Path:
    """``src`` with its rows written twice."""
    table = pq.read_table(src)
    dst.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.concat_tables([table, table]), dst)
    return dst


def bf16_section(
    spec: Spec, c: Corpora, runner: Runner, fp32: SentenceTransformerEmbedder, work: Work, rss: str
) -> tuple[list[Any], list[dict[str, str]]]:
    """Worker with automatic precision (bf16 here) against bare fp32 encode."""
    auto = SentenceTransformerEmbedder(device="cpu", precision="auto", threads=THREADS)
    auto.encode(c.uniq_texts[:64])
    res = compare(
        spec.repeats, lambda: runner.worker(auto, c.uniq_root, c.uniq_files), lambda: runner.bare(fp32, c.uniq_texts)
    )
    gate = {
        "test": "bf16 chosen automatically on this CPU, quality gate",
        "expected": "bf16, min cosine >= 0.9999",
        "measured": f"{auto.precision}, {auto.precision_cosine:.6f}",
        "status": "pass" if auto.precision == "bf16" and auto.precision_cosine >= 0.9999 else "fail",
    }
    speed = verdict("Python worker bf16 throughput vs bare encode fp32", res, 1.4, ">= 1.4x")
    return table_row(f"worker {auto.precision} vs bare fp32, no duplicates", work, res, rss), [gate, speed]


def measure(spec: Spec, work: Path, url: str | None, smoke: bool) -> dict[str, Any]:
    c = Corpora.build(spec, work)
    fp32 = SentenceTransformerEmbedder(device="cpu", precision="fp32", threads=THREADS)
    runner = Runner(work, url)
    fp32.encode(c.uniq_texts[:64])  # warm-up
    fp32.model.encode(c.uniq_texts[:64])
    cos_fp32 = equality(fp32, c.uniq_texts[:200])
    peaks = matmul_peak.measure_peak(THREADS, n=1024, repeats=3)
    plain = compare(
        spec.repeats, lambda: runner.worker(fp32, c.uniq_root, c.uniq_files), lambda: runner.bare(fp32, c.uniq_texts)
    )
    dup = compare(
        spec.repeats, lambda: runner.worker(fp32, c.dup_root, c.dup_files), lambda: runner.bare(fp32, c.dup_texts)
    )
    peaks += matmul_peak.measure_peak(THREADS, n=1024, repeats=3)
    peak = matmul_peak.best(matmul_peak.pooled(peaks))
    uniq = Work(len(c.uniq_texts), token_moments(fp32, c.uniq_texts), peak)
    if smoke:
        rss = {"fp32": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        cli_s = float("nan")
    else:
        rss, cli_s = {}, 0.0
        for precision in ("fp32", "bf16") if cpu_has_fast_bf16() else ("fp32",):
            rss[precision], took = peak_rss_of_cli(
                url, c.sample_root, c.sample_files, fp32.model_id, work / "cli-out", precision
            )
            cli_s = max(cli_s, took)
    rss_fp32 = f"{rss['fp32']:.0f}"
    rows = [table_row("worker fp32 vs bare fp32, no duplicates", uniq, plain, rss_fp32)]
    plan = [verdict("Python worker fp32 throughput vs bare SentenceTransformer.encode", plain, 0.95, ">= 0.95x")]
    notes = []
    if smoke:
        notes.append("Smoke run: fp32 only, no separate worker process; the ratios are not meaningful.")
    elif cpu_has_fast_bf16():
        row, checks = bf16_section(spec, c, runner, fp32, uniq, f"{rss['bf16']:.0f}")
        rows.append(row)
        plan += checks
    else:
        notes.append("This CPU has neither AVX512-BF16 nor AMX: the bf16 comparison was not run.")
        plan.append(
            {
                "test": "Python worker bf16 throughput vs bare encode fp32",
                "expected": ">= 1.4x where the CPU has AVX512-BF16 or AMX",
                "measured": "not applicable: this CPU has neither (the worker keeps fp32)",
                "status": "n/a",
            }
        )
    by_rows, by_tokens = per_job_dedup_ratio(c.dup_files), token_dedup_ratio(fp32, c.dup_files)
    by_tokens_sample = token_dedup_ratio(fp32, c.sample_files)
    label = f"worker fp32 vs bare fp32, sample corpus twice (dedup ratio {by_rows:.2f} rows, {by_tokens:.2f} tokens)"
    rows.append(table_row(label, Work(len(c.dup_texts), token_moments(fp32, c.dup_texts), peak), dup, rss_fp32))
    plan.append(
        verdict(
            "Python worker with duplicates vs bare encode",
            dup,
            0.95 * by_tokens,
            f">= 0.95 x dedup ratio ({by_tokens:.2f} in tokens)",
        )
    )
    plan.append(
        {
            "test": "Python worker embeddings equal sentence-transformers (fp32)",
            "expected": "min cosine >= 0.9999",
            "measured": f"{cos_fp32:.6f}",
            "status": "pass" if cos_fp32 >= 0.9999 else "fail",
        }
    )
    where = "benchmark process" if smoke else "own process, model included"
    plan.append(
        {
            "test": f"Python worker peak RSS ({where})",
            "expected": "reported",
            "measured": ", ".join(f"{v:.0f} MiB {k}" for k, v in rss.items()),
            "status": "pass",
        }
    )
    if smoke:  # too small to test the claims: only show that it ran
        plan = [
            {
                "test": "Python worker benchmark, smoke sizes (claims are checked by the full run)",
                "expected": "runs",
                "measured": "; ".join(f"{p['test'].removeprefix('Python worker ')}: {p['measured']}" for p in plan),
                "status": "pass",
            }
        ]
    notes.append(explain(spec, url, cli_s, smoke, peak))
    notes.append(
        f"In the sample corpus itself deduplication saves little compute ({by_tokens_sample:.2f}x in tokens, "
        f"{per_job_dedup_ratio(c.sample_files):.2f}x in rows): its repeated texts are mostly short replies."
    )
    return {
        "title": "Python worker (python -m workers.mps)",
        "tables": [
            {
                "caption": "Throughput (median, min–max over alternating pairs)",
                "columns": [
                    "comparison",
                    "rows (texts)",
                    "bare encode texts/s (wall)",
                    "worker texts/s (wall)",
                    "worker tokens/s",
                    "bare % of fp32 GEMM peak",
                    "worker % of fp32 GEMM peak",
                    "ratio, wall",
                    "ratio, CPU time",
                    "worker peak RSS (MiB)",
                ],
                "rows": rows,
            }
        ],
        "plan": plan,
        "notes": " ".join(notes),
    }


def explain(spec: Spec, url: str | None, cli_s: float, smoke: bool, peak: matmul_peak.GemmPeak) -> str:
    text = (
        "Rows are non-null rows. The worker is timed from enqueueing the jobs to the burst worker's exit (reading, "
        "cleaning, dedup, token-budget batching, writing and fsync, bus calls over "
        f"{'a private redis-server' if url else 'the in-memory bus'}); the baseline is one "
        "`encode(texts, batch_size=32, normalize_embeddings=True)` call on the same model object and the same texts; "
        f"{spec.repeats} alternating pair(s), {THREADS} intra-op thread(s) on both sides. The plan judges the "
        "ratio of CPU time (this process, all threads): this machine is shared and oversubscribed, and wall-clock "
        "ratios there swing by 2x between runs; CPU time leaves out only I/O waits, which the wall-clock ratio "
        "includes. Dedup ratio = rows, or their tokens, over the texts the worker embeds (it deduplicates within each "
        "job); the tokens ratio is the compute saved (repeated texts in chains are mostly short replies) and is the "
        "one the plan holds the worker to. Tokens/s count every row's tokens after truncation at 256. "
        "% of fp32 GEMM peak: model FLOPs (`bench.matmul_peak`: 2 × 10.6M matmul weights × tokens + attention, "
        f"no padding) per second over this machine's fp32 GEMM peak at {THREADS} thread(s), "
        f"{peak.median:.1f} GFLOP/s ({peak.backend}, n={peak.n}, median of {len(peak.samples)} samples taken before "
        "and after the comparisons); on the doubled corpus the worker's share counts the rows it did not embed "
        "twice, so it can pass the bare encode's by the dedup ratio, and a bf16 row can pass 100%."
    )
    if not smoke:
        text += (
            f" Peak RSS: `python -m workers.mps --burst --precision <p>` run as its own process on the sample "
            f"corpus (at most {cli_s:.1f} s including the model load), measured through `bench.child`."
        )
    return text


if __name__ == "__main__":
    import json

    print(json.dumps(run(smoke="--smoke" in sys.argv), indent=1))
