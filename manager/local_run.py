"""``python -m manager run``: the whole job on one machine.

With no Redis URL it starts an embedded Redis; with no ``chains/`` under the
data root it writes a sample corpus; then it starts one Python worker and one
Rust worker, lets the coordinator scan, enqueue and watch the run until every
job is done or dead-lettered, stops the workers, clusters, and prints a
summary. The exit status is non-zero when any job was dead-lettered or a step
failed, so scripts can rely on it.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bus.cli_options import DATA_ROOT_FLAGS, ENV_DATA_ROOT, DefaultsHelpFormatter
from bus.constants import INPUT_DIR
from bus.settings import ENV_URL, RedisSettings
from manager.published import display_url
from manager.scan_cli import add_job_options
from manager.startup import DEFAULT_REDIS_WAIT_S, check_file, settings_from_url, wait_for_redis

log = logging.getLogger("embedfleet.run")


@dataclass
class WorkerProc:
    """A worker subprocess and where its log goes."""

    kind: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    log_file: Any = field(repr=False, default=None)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="the whole job on this machine (embedded Redis, sample data, both workers)",
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument(
        *DATA_ROOT_FLAGS,
        "--data",
        dest="data",
        type=Path,
        default=Path(os.environ.get(ENV_DATA_ROOT) or "data"),
        metavar="DIR",
        help=f"input and output root, holding chains/ (a sample is written if absent) (env {ENV_DATA_ROOT}; "
        "default: data)",
    )
    p.add_argument(
        "--redis-url",
        default=os.environ.get(ENV_URL),
        help=f"use this Redis instead of an embedded one (env {ENV_URL})",
    )
    add_job_options(p)
    p.add_argument("--worker-bin", type=Path, help="embedfleet-worker binary (skip the Rust worker if absent)")
    p.add_argument("--onnx-dir", type=Path, default=Path("models/onnx/minilm"), help="the Rust worker's model")
    p.add_argument("--python-workers", type=int, default=1, help="Python workers started")
    p.add_argument("--rust-workers", type=int, default=1, help="Rust workers started (with --worker-bin)")
    p.add_argument("--rust-precision", default="int8", choices=["fp32", "int8"], help="the Rust workers' model")
    p.add_argument("--port", type=int, default=8377, help="dashboard port on 127.0.0.1 (0: no dashboard)")
    p.add_argument(
        "--keep-serving",
        action="store_true",
        help="keep the dashboard up with the final state until Ctrl-C or SIGTERM",
    )
    p.add_argument(
        "--redis-wait",
        type=float,
        default=DEFAULT_REDIS_WAIT_S,
        metavar="SECONDS",
        help="with --redis-url: retry an unreachable Redis this long at start, then exit 75",
    )
    p.add_argument(
        "--progress-every",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="when the output is not a terminal: a progress line this often (on a terminal: a live bar)",
    )
    p.add_argument("--no-cluster", action="store_true", help="stop after embedding")
    p.add_argument("--sample-files", type=int, default=3, help="files per subreddit in a generated sample")
    p.add_argument("--sample-rows", type=int, default=400, help="rows per file in a generated sample")
    p.set_defaults(func=main)


def ensure_corpus(data: Path, files: int, rows: int) -> None:
    if (data / INPUT_DIR).is_dir():
        return
    from corpus.generate import generate_corpus

    paths = generate_corpus(data, suffixes=2, subreddits=4, files_per_subreddit=files, rows_per_file=rows, seed=0)
    print(f"[run] no input under {data}: wrote a sample corpus of {len(paths)} files, {len(paths) * rows} rows")


def start_worker(kind: str, cmd: list[str], env: dict[str, str], log_dir: Path, n: int) -> WorkerProc:
    log_path = log_dir / f"worker-{kind}-{n}.log"
    fh = open(log_path, "ab")
    proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    return WorkerProc(kind, proc, log_path, fh)


def count_parquet(root: Path) -> int:
    return sum(1 for p in root.rglob("*.parquet") if not p.name.startswith(".")) if root.is_dir() else 0


def last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][-300:] if lines else ""


def watch_workers(workers: list[WorkerProc], coord: Any, stopping: threading.Event) -> None:
    """Say when a worker dies on its own; end the run (interrupted) when none is left,
    instead of waiting for a queue nobody drains."""
    reported: set[int] = set()
    while not stopping.wait(1.0):
        for i, w in enumerate(workers):
            rc = w.proc.poll()
            if rc is not None and i not in reported:
                reported.add(i)
                print(f"[run] {w.kind} worker exited with status {rc}: {last_line(w.log_path)} (log {w.log_path})")
        if len(reported) == len(workers):
            print("[run] every worker has exited: ending the run")
            coord.stop()
            return


def rust_runtime_env(a: argparse.Namespace) -> dict[str, str]:
    """``ORT_DYLIB_PATH`` for the Rust worker (the wheel's library); without one the Rust worker is left out."""
    from models.ort import ENV_ORT, ort_library

    if a.worker_bin is None or not a.worker_bin.exists() or a.rust_workers == 0:
        return {}
    try:
        return {ENV_ORT: str(ort_library())}
    except FileNotFoundError as e:
        print(f"[run] no Rust worker: {e}")
        a.rust_workers = 0
        return {}


def worker_commands(a: argparse.Namespace, data: Path) -> list[tuple[str, list[str]]]:
    common = ["--data-root", str(data.resolve())]
    cmds: list[tuple[str, list[str]]] = []
    for _ in range(a.python_workers):
        # One intra-op thread each: the two workers share this machine's cores.
        cmds.append(("python", [sys.executable, "-m", "workers.mps", *common, "--threads", "1"]))
    if a.worker_bin is not None and a.worker_bin.exists():
        for _ in range(a.rust_workers):
            cmds.append(
                (
                    "rust",
                    [
                        str(a.worker_bin),
                        *common,
                        "--model-dir",
                        str(a.onnx_dir.resolve()),
                        "--precision",
                        a.rust_precision,
                        "--threads",
                        "1",
                    ],
                )
            )
    elif a.rust_workers:
        print(f"[run] no Rust worker binary at {a.worker_bin}: running the Python worker alone")
    return cmds


def stop_workers(workers: list[WorkerProc], grace_s: float = 30.0) -> None:
    """SIGTERM (finish the current job, then exit), SIGKILL after a grace period."""
    for w in workers:
        if w.proc.poll() is None:
            w.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for w in workers:
        try:
            w.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.proc.kill()
            w.proc.wait(5)
        if w.log_file is not None:
            w.log_file.close()


def run_clusterer(
    data: Path, env: dict[str, str], allow_partial: bool = False, extra: tuple[str, ...] = ()
) -> dict[str, Any] | None:
    """Cluster the run's outputs. ``allow_partial`` when jobs were dead-lettered, inputs were unreadable
    or cluster-now cut the run short: the clusters cover what was embedded and the report lists the rest
    (the run still exits non-zero for the failures). ``extra``: more clusterer flags."""
    cmd = [
        sys.executable,
        "-m",
        "clusterer",
        "--data-root",
        str(data),
        *(["--allow-partial"] if allow_partial else []),
        *extra,
    ]
    print("[run] clustering: " + " ".join(cmd[1:]))
    proc = subprocess.run(cmd, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"clusterer exited with status {proc.returncode}")
    import json

    summary_path = data / "clusters" / "clusters_summary.json"
    if not summary_path.exists():
        return None
    full = json.loads(summary_path.read_text())
    # What the run's summary line shows; the whole summary stays in the file.
    keep = ("clusters", "points", "noise_share", "outliers", "seconds")
    return {**{k: full[k] for k in keep if k in full}, "report": str(data / "clusters" / "report.html")}


def clusterer_flags(a: argparse.Namespace) -> tuple[str, ...]:
    """The job options the clusterer needs too (the text column, the checkpoint, the model)."""
    flags: list[str] = []
    if a.text_column != "text":
        flags += ["--text-column", a.text_column]
    if a.subreddits_list is not None:
        flags += ["--subreddits-list", str(a.subreddits_list)]
    if a.model:
        flags += ["--model", a.model]
    return tuple(flags)


def main(a: argparse.Namespace) -> int:
    from bus.embedded import EmbeddedRedis
    from manager.coordinator import ClusterRequest, Coordinator
    from manager.progress import EmbeddingProgress
    from models.source import model_id

    data: Path = a.data
    check_file(a.subreddits_list, "--subreddits-list")
    data.mkdir(parents=True, exist_ok=True)
    ensure_corpus(data, a.sample_files, a.sample_rows)
    state_dir = data / ".embedfleet"
    with ExitStack() as stack:
        url = a.redis_url
        settings: RedisSettings
        if url:
            settings = settings_from_url(url, None)
            wait_for_redis(settings, a.redis_wait)
        else:
            url = stack.enter_context(EmbeddedRedis(state_dir / "redis")).url
            print(f"[run] embedded Redis at {url} (AOF in {state_dir / 'redis'})")
            settings = RedisSettings.from_url(url)
        coord = Coordinator(
            settings,
            output_root=data,
            input_root=data,
            model=a.model or model_id(),
            column=a.text_column,
            id_column=a.id_column,
            rows_per_part=a.rows_per_part,
            subreddit_list=a.subreddits_list,
            resume=True,
        )
        terminated = threading.Event()
        if threading.current_thread() is threading.main_thread():  # SIGTERM: end the run (or the lingering) now
            signal.signal(signal.SIGTERM, lambda *_: _terminate(terminated, coord))
        api = None
        if a.port:
            api = coord.serve_api(port=a.port)
            stack.callback(api.stop)
            print(f"[run] dashboard: {display_url(api.url)}")
        env = {**os.environ, ENV_URL: url, "HF_HUB_OFFLINE": "1", **rust_runtime_env(a)}
        log_dir = coord.run_dir
        workers = [start_worker(kind, cmd, env, log_dir, i) for i, (kind, cmd) in enumerate(worker_commands(a, data))]
        stack.callback(stop_workers, workers)
        print(f"[run] started {len(workers)} workers ({', '.join(w.kind for w in workers)}); logs in {log_dir}")

        stopping = threading.Event()
        threading.Thread(target=watch_workers, args=(workers, coord, stopping), daemon=True).start()

        def cluster(req: ClusterRequest) -> dict[str, Any] | None:
            stopping.set()
            stop_workers(workers)
            failures = bool(coord.figures.tracker.dead) or bool(coord.figures.counters.scan_errors)
            return run_clusterer(data, env, allow_partial=req.partial or failures, extra=clusterer_flags(a))

        t0 = time.monotonic()
        progress = EmbeddingProgress(coord.run_status, every_s=a.progress_every).start()
        try:
            summary = coord.run(cluster=None if a.no_cluster else cluster)
        finally:
            progress.stop()
            stopping.set()  # the workers are stopped on purpose from here on: no "worker exited" notes
        elapsed = time.monotonic() - t0
        print(summary.render())
        inputs, outputs = count_parquet(data / INPUT_DIR), count_parquet(data / "embeddings")
        print(f"[run] files: {inputs} inputs, {outputs} outputs under {data / 'embeddings'}")
        print(f"[run] wall time {elapsed:.1f} s; run files in {coord.run_dir}")
        if not a.no_cluster and summary.cluster:
            print(f"[run] clusters and report under {data / 'clusters'} (report.html, report.md, map.png)")
        elif not a.no_cluster:
            print("[run] no clusters were written this run (see the error above)")
        if api is not None:
            linger(api.url, a.keep_serving, terminated)
        return int(summary.exit_code)


def linger(url: str, keep_serving: bool, stopped: threading.Event | None = None, grace_s: float = 2.0) -> None:
    """Let open dashboards receive the final state (they then say the run
    ended and keep showing it); with ``--keep-serving``, serve until Ctrl-C
    or SIGTERM (``stopped``). A SIGTERM already received skips the wait."""
    stopped = stopped or threading.Event()
    if stopped.is_set():
        return
    shown = display_url(url)  # the address a person opens (published, under Compose)
    if keep_serving:
        print(
            f"[run] the dashboard on {shown} shows the final state until this process exits; Ctrl-C or SIGTERM to stop",
            flush=True,
        )
        try:
            while not stopped.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        return
    print(f"[run] dashboard {shown} stops now; an open page keeps the final state (--keep-serving keeps it up)")
    sys.stdout.flush()
    stopped.wait(grace_s)


def _terminate(terminated: threading.Event, coordinator: Any) -> None:
    """SIGTERM: stop the run (interrupted) or, once it ended, the serving."""
    terminated.set()
    coordinator.stop()
