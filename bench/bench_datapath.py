"""The data path at accelerator rates: can a worker feed a device faster than its CPU?

Each worker kind runs as a user runs it (a real redis-server, the reuse store
on, ``--embedder simulated``): the simulated device tokenizes with the real
tokenizer, pads and batches as for the device, and "computes" by sleeping off
the CPU, returning deterministic vectors. Two measurements per kind:

1. The data-path ceiling: a zero-cost device, short distinct texts (mean about
   20 tokens), rows/s and tokens/s of wall time from enqueueing the jobs to the
   bus counting the last one done (outputs fsynced and renamed into place).
2. The device's busy share at 20k, 50k and 100k rows/s: the seconds the device
   was asked to compute (the texts sent to the model ÷ its speed, from the
   outputs' ``model_calls``) over the wall time of the same window.

``BENCH_DATAPATH_STANDIN=hash`` runs the older ``--embedder hash`` stand-in
instead (no tokenization, its cost per row slept on the worker's own thread):
how the figures before the simulated device were measured.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import redis

from bench.bench_fleet import BINARY, ONNX_DIR, ort_library, redis_server
from bus.keys import Keys
from bus.settings import RedisSettings
from models.source import default_model_dir, model_id

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("EMBEDFLEET_HOME", Path.home() / ".cache" / "embedfleet")) / "bench" / "datapath"
NAMESPACE = "efdata"
SPEEDS = (20_000, 50_000, 100_000)
"""Simulated device speeds, rows/s."""
TARGET_CEILING = {"python": 30_000, "rust": 100_000}
TARGET_BUSY_AT = {"python": 20_000, "rust": 50_000}
TARGET_BUSY = 0.90
CORPUS_VERSION = "v1"
WORDS = (
    "the a of to and in is it you that for was on are with as be this have not but what all were when we there can "
    "an your which their if do will each about how up out them then she many some so these would other into has "
    "more her two like him see time could no make than first been its who now people my made over did down only "
    "way find use may water long little very after words called just where most know get through back much go good "
    "new write our me man too any day same right look think also around another came come work three word must "
    "because does part even place well such here take why things help put years different away again off went old "
    "number great tell men say small every found still between name should home big give air line set own under "
    "read last never us left end along while might next sound below saw something thought both few those always "
    "looked show large often together asked house world going want school important until form food keep children "
    "feet land side without boy once animals life enough took sometimes four head above kind began almost live page "
    "got earth need far hand high year mother light parts country father let night following picture being study "
    "second eyes soon times story boys since white days ever paper hard near sentence better best across during today"
).split()


@dataclass(frozen=True)
class Spec:
    ceiling_rows: int
    busy_rows: int
    files: int


FULL = Spec(ceiling_rows=500_000, busy_rows=100_000, files=20)
SMOKE = Spec(ceiling_rows=4_000, busy_rows=4_000, files=4)


# -- the corpus -------------------------------------------------------------------------
def short_texts(n: int, seed: int) -> list[str]:
    """``n`` distinct texts of 5-30 common words (about 20 tokens on average)."""
    rng = np.random.default_rng(seed)
    words = np.array(WORDS, dtype=object)
    out: dict[str, None] = {}
    while len(out) < n:
        k = n - len(out) + 16
        lengths = rng.integers(5, 31, size=k)
        picks = rng.integers(0, len(words), size=(k, 30))
        for row, length in zip(picks, lengths, strict=True):
            out[" ".join(words[row[:length]])] = None
    return list(out)[:n]


def corpus(rows: int, files: int, tag: str) -> Path:
    """``rows`` distinct short texts with an int64 id, in ``files`` files (cached)."""
    root = CACHE / f"{CORPUS_VERSION}-{tag}-{rows}-{files}"
    if (root / "complete").exists():
        return root
    texts = short_texts(rows, seed=rows)
    folder = root / "chains" / "bench" / "short"
    folder.mkdir(parents=True, exist_ok=True)
    per = -(-rows // files)
    for i in range(files):
        part = texts[i * per : (i + 1) * per]
        ids = pa.array(np.arange(i * per, i * per + len(part), dtype=np.int64))
        pq.write_table(pa.table({"id": ids, "text": part}), folder / f"part-{i:03d}.parquet")
    (root / "complete").write_text("ok\n")
    return root


def token_count(root: Path) -> tuple[int, int]:
    """(rows, tokens) of the corpus as the model sees it (``[CLS]``/``[SEP]`` included, at most 256)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(default_model_dir() / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    rows = tokens = 0
    for f in sorted(root.rglob("*.parquet")):
        texts = pq.read_table(f, columns=["text"])["text"].to_pylist()
        rows += len(texts)
        tokens += sum(min(256, len(e.ids)) for e in tok.encode_batch(texts))
    return rows, tokens


# -- one timed run ------------------------------------------------------------------------
def stand_in() -> str:
    return os.environ.get("BENCH_DATAPATH_STANDIN", "simulated")


def command(
    kind: str, url: str, inp: Path, out: Path, speed: int, extra: tuple[str, ...] = ()
) -> tuple[list[str], dict[str, str]]:
    common = ["--redis-url", url, "--namespace", NAMESPACE, "--input-root", str(inp), "--output-root", str(out),
              "--log-level", "WARNING"]  # fmt: skip
    if stand_in() == "hash":
        common += ["--embedder", "hash", "--hash-seconds-per-row", repr(1 / speed if speed else 0.0)]
    else:
        common += ["--embedder", "simulated", "--sim-rows-per-second", str(speed)]
    common += [*extra, *os.environ.get("BENCH_DATAPATH_FLAGS", "").split()]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if kind == "python":
        return [sys.executable, "-m", "workers.mps", *common], env
    env["ORT_DYLIB_PATH"] = str(ort_library())
    return [str(BINARY), *common, "--model-dir", str(ONNX_DIR)], env


@dataclass(frozen=True)
class Run:
    wall: float
    cpu: float
    model_calls: int
    redis_cpu: float = 0.0
    """CPU seconds of redis-server in the same window (the bus and the reuse store)."""


def wait_for(check: Any, what: str, timeout_s: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with status {proc.returncode} {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out {what}")
        time.sleep(0.01)


def one_run(kind: str, url: str, inp: Path, work: Path, speed: int, extra: tuple[str, ...] = ()) -> Run:
    from bus.redis_transport import RedisTransport
    from workers.testing import jobs_for

    client = redis.Redis.from_url(url)
    client.flushall()
    out = Path(tempfile.mkdtemp(prefix=f"out-{kind}-", dir=work))
    keys = Keys(NAMESPACE)
    cmd, env = command(kind, url, inp, out, speed, extra)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    server = next(
        c.pid for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == port and c.status == "LISTEN"
    )
    rp = psutil.Process(server)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    try:
        wait_for(lambda: client.hlen(keys.workers) > 0, "before registering", 120, proc)
        files = sorted(inp.rglob("*.parquet"))
        jobs = jobs_for(inp, files, model_id(), id_column="id")
        bus = RedisTransport.from_settings(RedisSettings.from_url(url, namespace=NAMESPACE))
        p = psutil.Process(proc.pid)
        c0, r0 = p.cpu_times(), rp.cpu_times()
        t0 = time.perf_counter()
        for job in jobs:
            bus.enqueue(job)

        def done() -> bool:
            got, dead = (int(x or 0) for x in client.hmget(keys.stats, ["done", "dead"]))
            if dead:
                raise RuntimeError(f"{dead} job(s) dead-lettered")
            return got >= len(jobs)

        wait_for(done, "before finishing its jobs", 1800, proc)
        wall = time.perf_counter() - t0
        c1, r1 = p.cpu_times(), rp.cpu_times()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    calls = sum(
        int((pq.read_metadata(f).metadata or {}).get(b"embedfleet.model_calls", 0)) for f in out.rglob("*.parquet")
    )
    redis_cpu = (r1.user + r1.system) - (r0.user + r0.system)
    return Run(wall, (c1.user + c1.system) - (c0.user + c0.system), calls, redis_cpu)


# -- the benchmark ------------------------------------------------------------------------
def kinds() -> list[str]:
    have_rust = BINARY.is_file() and (ONNX_DIR / "embedfleet_model.json").is_file()
    found = ["python", "rust"] if have_rust else ["python"]
    only = os.environ.get("BENCH_DATAPATH_KINDS")
    return [k for k in found if not only or k in only.split(",")]


@contextmanager
def server(work: Path) -> Iterator[str]:
    with redis_server(work / "redis") as (url, _pid):
        yield url


def measure(spec: Spec, work: Path) -> dict[str, Any]:
    ceiling_in = corpus(spec.ceiling_rows, spec.files, "ceiling")
    busy_in = corpus(spec.busy_rows, spec.files, "busy")
    rows_c, tokens_c = token_count(ceiling_in)
    rows_b, tokens_b = token_count(busy_in)
    got: dict[str, Any] = {"rows": rows_c, "tokens": tokens_c, "busy_rows": rows_b, "busy_tokens": tokens_b}
    with server(work) as url:
        for kind in kinds():
            got[kind] = {"ceiling": one_run(kind, url, ceiling_in, work, 0)}
            got[kind]["no-reuse"] = one_run(kind, url, ceiling_in, work, 0, ("--no-reuse",))
            for speed in SPEEDS:
                got[kind][speed] = one_run(kind, url, busy_in, work, speed)
    return got


def tables(m: dict[str, Any]) -> list[dict[str, Any]]:
    rows, tokens = m["rows"], m["tokens"]
    ceiling = []
    busy = []
    for kind in kinds():
        for label, key in (("", "ceiling"), (", `--no-reuse`", "no-reuse")):
            r: Run = m[kind][key]
            ceiling.append([f"{kind} worker{label}", f"{rows / r.wall:,.0f}", f"{tokens / r.wall:,.0f}",
                            f"{r.wall:.1f}", f"{r.cpu:.1f}", f"{r.redis_cpu:.1f}", f"{rows / r.cpu:,.0f}"])  # fmt: skip
        for speed in SPEEDS:
            b: Run = m[kind][speed]
            share = b.model_calls / speed / b.wall
            busy.append([f"{kind} worker", f"{speed:,}", f"{m['busy_rows'] / b.wall:,.0f}", f"{100 * share:.1f}%",
                         f"{b.wall:.1f}", f"{b.cpu:.1f}", f"{b.redis_cpu:.1f}"])  # fmt: skip
    return [
        {
            "caption": f"Data-path ceiling: {rows:,} distinct short texts ({tokens / rows:.1f} tokens on average), "
            f"zero-cost device, `--embedder {stand_in()}`",
            "columns": [
                "worker",
                "rows/s (wall)",
                "tokens/s (wall)",
                "wall s",
                "worker CPU s",
                "redis CPU s",
                "rows per worker CPU-second",
            ],
            "rows": ceiling,
        },
        {
            "caption": f"Simulated device busy share, {m['busy_rows']:,} distinct short texts",
            "columns": [
                "worker",
                "device rows/s",
                "rows/s (wall)",
                "device busy",
                "wall s",
                "worker CPU s",
                "redis CPU s",
            ],
            "rows": busy,
        },
    ]


def plan(m: dict[str, Any], smoke: bool) -> list[dict[str, str]]:
    out = []
    for kind in kinds():
        r: Run = m[kind]["ceiling"]
        rate = m["rows"] / r.wall
        at = TARGET_BUSY_AT[kind]
        b: Run = m[kind][at]
        share = b.model_calls / at / b.wall
        out += [
            {
                "test": f"{kind} worker data-path ceiling, short texts, 2 cores, wall",
                "expected": f">= {TARGET_CEILING[kind]:,} rows/s",
                "measured": f"{rate:,.0f} rows/s",
                "status": "pass" if rate >= TARGET_CEILING[kind] else "fail",
            },
            {
                "test": f"{kind} worker keeps a {at // 1000}k rows/s simulated device busy",
                "expected": f">= {TARGET_BUSY:.0%} of the wall time",
                "measured": f"{share:.1%}",
                "status": "pass" if share >= TARGET_BUSY else "fail",
            },
        ]
    if smoke:
        return [
            {
                "test": "data-path benchmark, smoke sizes (speed claims are checked by the full run)",
                "expected": "runs",
                "measured": "; ".join(f"{p['test']}: {p['measured']}" for p in out),
                "status": "pass",
            }
        ]
    return out


def run(smoke: bool) -> dict[str, Any]:
    spec = SMOKE if smoke else FULL
    if os.environ.get("BENCH_DATAPATH_ROWS"):
        n = int(os.environ["BENCH_DATAPATH_ROWS"])
        spec = Spec(n, min(n, spec.busy_rows), spec.files)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-datapath-") as tmp:
        m = measure(spec, Path(tmp))
    notes = (
        f"Each worker runs as a separate process with its defaults (reuse store on, in the same redis-server, "
        f"flushed before each run), one job per input file ({spec.files} files), the worker started and "
        "registered before the jobs are enqueued; wall time runs from the first enqueue to the bus counting the "
        "last job done. Busy share = texts sent to the model ÷ device speed ÷ wall time. No GPU was used: the "
        f"device is simulated. Load average before: {load:.1f} on {os.cpu_count()} shared cores."
    )
    return {
        "title": "Data path at accelerator rates (simulated device)",
        "tables": tables(m),
        "plan": plan(m, smoke),
        "notes": notes,
        "raw": {
            k: (v if not isinstance(v, dict) else {str(s): r.__dict__ for s, r in v.items()}) for k, v in m.items()
        },
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(smoke="--smoke" in sys.argv), indent=1, default=str))
