# Twin: rust/worker/src/cli.rs (docs/parity.md)
"""``python -m workers.mps``: claim embedding jobs from Redis and embed them
on this machine's best device (MPS, then CUDA, then CPU).

Flags shared with the Rust worker come first; every one has an environment
variable where the fleet convention gives one. The Redis URL comes from
``--redis-url``/``EMBEDFLEET_REDIS_URL``, else from mDNS when the manager
advertises it. Exit status: 0 after a clean stop (signal, drain, burst), 2 for
bad arguments or no Redis, 3 when a job ran past ``--job-timeout``, 77 when
Redis refuses the worker's password or ACL user.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bus import constants as c
from bus.cli_options import ENV_DATA_ROOT, DefaultsHelpFormatter, add_root_options, roots
from bus.reuse import ReuseStore
from bus.settings import ENV_NAMESPACE, ENV_URL, RedisSettings
from workers import KIND, __version__
from workers.device import DEVICES, PRECISIONS
from workers.embedder import Embedder, HashEmbedder
from workers.limits import MemoryBudget, cap_open_files, parse_size
from workers.paths import DataRoots
from workers.pipeline import DEFAULT_CHUNK_ROWS, EmbedPipeline
from workers.runtime import Worker, WorkerConfig, default_worker_id
from workers.temps import TempFiles
from workers.writer import Provenance

if TYPE_CHECKING:
    from bus.redis_transport import RedisTransport

ENV_REUSE = "EMBEDFLEET_REUSE"
ENV_REUSE_URL = "EMBEDFLEET_REUSE_URL"
DISCOVERY_TIMEOUT_S = 5.0
log = logging.getLogger("workers.mps")


class UsageError(Exception):
    """Bad flags or no Redis to talk to: exit status 2 with the message."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m workers.mps", description=__doc__.split("\n\n")[0], formatter_class=DefaultsHelpFormatter
    )
    env = os.environ.get
    p.add_argument("--redis-url", default=env(ENV_URL), help=f"Redis URL (env {ENV_URL}); else found by mDNS")
    p.add_argument(
        "--namespace",
        default=env(ENV_NAMESPACE, c.DEFAULT_NAMESPACE),
        help=f"key prefix (env {ENV_NAMESPACE}; default: {c.DEFAULT_NAMESPACE})",
    )
    add_root_options(
        p,
        input_help="where this machine mounts the input root (holds chains/)",
        output_help="where this machine mounts the output root (holds embeddings/)",
    )
    p.add_argument("--lanes", default=c.DEFAULT_LANE, help="lanes to consume, in priority order (e.g. gpu,default)")
    p.add_argument("--worker-id", default=None, help="default: python-<host>-<pid>")
    p.add_argument(
        "--lease-ms", type=int, default=c.DEFAULT_LEASE_MS, help="lease; another worker takes over a job idle this long"
    )
    p.add_argument(
        "--max-deliveries", type=int, default=c.DEFAULT_MAX_DELIVERIES, help="deliveries before a job is dead-lettered"
    )
    p.add_argument("--job-timeout", type=float, default=None, help="seconds; a job past it makes the worker exit 3")
    p.add_argument("--burst", action="store_true", help="exit 0 once the lanes are empty and nothing is pending")
    p.add_argument("--max-memory", default=None, help="memory ceiling, e.g. 4G: shrink batches or refuse a part")
    p.add_argument("--max-open-files", type=int, default=None, help="cap on open file descriptors")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log threshold")
    r = p.add_argument_group("reuse store (docs/reuse.md)")
    r.add_argument(
        "--no-reuse",
        action="store_true",
        default=env(ENV_REUSE, "1") == "0",
        help=f"do not look up or store vectors fleet-wide; each job dedups within itself only "
        f"(env {ENV_REUSE}=0 does the same)",
    )
    r.add_argument(
        "--reuse-url",
        default=env(ENV_REUSE_URL),
        help=f"Redis of the reuse store (env {ENV_REUSE_URL}; default: the bus's Redis)",
    )
    g = p.add_argument_group("model")
    g.add_argument("--device", default="auto", choices=DEVICES, help="auto: mps, then cuda, then cpu")
    g.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="auto: fp16 on GPUs, bf16 on CPUs with AVX512-BF16/AMX, each kept only if within cosine 0.9999 of fp32",
    )
    g.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: all cores)")
    g.add_argument("--model-dir", type=Path, default=None, help="model directory (default: PyPI package)")
    g.add_argument("--token-budget", type=int, default=None, help="tokens per batch (default: from device memory)")
    g.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS, help="rows read and embedded at a time")
    g.add_argument(
        "--embedder",
        default="sentence-transformers",
        choices=["sentence-transformers", "hash", "simulated"],
        help="hash: deterministic stand-in with no model, for bus tests and benchmarks; simulated: the real "
        "tokenizer and batching on a simulated device (data-path benchmarks)",
    )
    g.add_argument("--hash-seconds-per-row", type=float, default=0.0, help="simulated model cost of --embedder hash")
    g.add_argument(
        "--sim-us-per-token", type=float, default=0.0, help="--embedder simulated: device microseconds per padded token"
    )
    g.add_argument(
        "--sim-rows-per-second",
        type=float,
        default=0.0,
        help="--embedder simulated: device speed in rows/s (overrides --sim-us-per-token; 0: a zero-cost device)",
    )
    p.add_argument("--version", action="version", version=f"embedfleet {__version__}")
    return p


def redis_url(a: argparse.Namespace) -> str:
    if a.redis_url:
        return str(a.redis_url)
    try:
        from bus.discovery import find_redis_url  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        raise UsageError(f"no Redis URL: pass --redis-url or set {ENV_URL} (mDNS discovery is not available)") from None
    log.info("no Redis URL given: looking for a manager advertising one by mDNS (%.0f s)", DISCOVERY_TIMEOUT_S)
    try:
        url = find_redis_url(timeout_s=DISCOVERY_TIMEOUT_S, namespace=a.namespace)
    except OSError as e:
        raise UsageError(f"no Redis URL: mDNS discovery failed ({e}); pass --redis-url or set {ENV_URL}") from None
    if not url:
        raise UsageError(
            f"no Redis URL: none given and no manager advertised one by mDNS within "
            f"{DISCOVERY_TIMEOUT_S:.0f} s; pass --redis-url or set {ENV_URL}"
        )
    return str(url)


def bus_settings(url: str, namespace: str | None, flag: str) -> RedisSettings:
    """Settings of a Redis URL; a malformed one is a usage error naming the
    flag (the message never repeats the URL: it may hold a password)."""
    try:
        return RedisSettings.from_url(url, namespace=namespace)
    except ValueError as e:
        raise UsageError(f"{flag}: {e}") from None


def data_roots(a: argparse.Namespace) -> DataRoots:
    r = roots(a)
    inp, out = r.input, r.output
    if inp is None or out is None:
        raise UsageError(f"give --data-root (or {ENV_DATA_ROOT}), or both --input-root and --output-root")
    if not Path(inp).is_dir():
        raise UsageError(f"input root {inp} is not a directory")
    Path(out).mkdir(parents=True, exist_ok=True)
    return DataRoots.create(inp, out)


def embedder(a: argparse.Namespace, memory: MemoryBudget) -> Embedder:
    if a.embedder == "hash":
        from models.source import model_id

        return HashEmbedder(model_id(a.model_dir), a.hash_seconds_per_row)
    if a.embedder == "simulated":
        from models.source import default_model_dir, model_id
        from workers.sim_embedder import SimulatedEmbedder

        directory = a.model_dir or default_model_dir()
        return SimulatedEmbedder(
            model_id(directory), directory, a.sim_us_per_token, a.sim_rows_per_second, a.token_budget
        )
    from workers.st_embedder import SentenceTransformerEmbedder

    try:
        return SentenceTransformerEmbedder(a.model_dir, a.device, a.precision, a.threads, memory, a.token_budget)
    except ValueError as e:
        raise UsageError(str(e)) from None


def reuse_store(a: argparse.Namespace, bus: RedisSettings, transport: RedisTransport) -> ReuseStore | None:
    """The fleet's reuse store: a dedicated Redis, the bus's own, or none.

    Claims last one job lease (``--lease-ms``): a worker killed while it holds
    claims holds up the texts no longer than it holds up its job."""
    from bus.redis_transport import connect
    from bus.reuse_redis import RedisReuseStore

    if a.no_reuse:
        log.info("reuse store off (--no-reuse): each job dedups within itself only")
        return None
    if not a.reuse_url:
        return RedisReuseStore(transport.r, namespace=bus.namespace, claim_ms=a.lease_ms)
    settings = bus_settings(a.reuse_url, bus.namespace, "--reuse-url")
    log.info("reuse store: Redis %s", settings.redacted())
    return RedisReuseStore(connect(settings), namespace=bus.namespace, claim_ms=a.lease_ms)


def build(a: argparse.Namespace) -> Worker:
    from bus.redis_transport import RedisTransport
    from workers.backlog import lanes_backlog

    lanes = [x.strip() for x in a.lanes.split(",") if x.strip()]
    if not lanes:
        raise UsageError("--lanes names no lane")
    if a.max_open_files:
        try:
            cap_open_files(a.max_open_files)
        except ValueError as e:
            raise UsageError(str(e)) from None
    try:
        memory = MemoryBudget(parse_size(a.max_memory) if a.max_memory else None)
    except ValueError as e:
        raise UsageError(str(e)) from None
    roots = data_roots(a)
    settings = bus_settings(redis_url(a), a.namespace, "--redis-url")
    if a.reuse_url and not a.no_reuse:
        bus_settings(a.reuse_url, a.namespace, "--reuse-url")  # refused before the model loads
    model = embedder(a, memory)
    worker_id = a.worker_id or default_worker_id(KIND)
    log.info(
        "embedfleet %s worker %s: Redis %s, namespace %s, model %s on %s (%s)",
        __version__,
        worker_id,
        settings.redacted(),
        settings.namespace,
        model.model_id,
        model.device,
        model.precision,
    )
    prov = Provenance(worker_id, KIND, model.device, model.precision, __version__)
    transport = RedisTransport.from_settings(settings, lease_ms=a.lease_ms)
    pipeline = EmbedPipeline(roots, model, prov, memory, a.chunk_rows, reuse=reuse_store(a, settings, transport))
    cfg = WorkerConfig(
        worker_id=worker_id,
        lanes=lanes,
        lease_ms=a.lease_ms,
        max_deliveries=a.max_deliveries,
        job_timeout_s=a.job_timeout,
        burst=a.burst,
        device=model.device,
        record_extra={"precision": model.precision, "model": model.model_id},
    )
    return Worker(transport, pipeline, cfg, backlog=lanes_backlog(transport), temps=TempFiles(roots, worker_id))


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    logging.basicConfig(level=a.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        worker = build(a)
    except UsageError as e:
        print(f"python -m workers.mps: error: {e}", file=sys.stderr)
        return 2
    return worker.run()


if __name__ == "__main__":
    sys.exit(main())
