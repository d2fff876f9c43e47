"""A minimal worker on ``bus.redis_transport.RedisTransport`` (test use only).

``python -m tests.fault.miniworker``: the bus side of a worker as
``docs/protocol.md`` describes it (claim, lease renewal every lease/3,
up-to-date skip, atomic output write, completion, dead letter after
``--max-deliveries``, burst exit) with a deterministic hash "embedder"
instead of a model. The harness uses it to test itself and for assertions
about the bus protocol alone; the scenarios run the real workers.

It honours the same fault hooks as the real workers (see README.md), and
``EMBEDFLEET_MINI_BUG`` plants a bug on purpose (``test_harness_bites.py``):
``EMBEDFLEET_FAULT_POINT``, ``EMBEDFLEET_FAULT_EVERY``,
``EMBEDFLEET_FAULT_PROBABILITY`` and ``EMBEDFLEET_FAULT_CRASH_PATH``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bus import constants as c
from bus.errors import BusUnavailable, LeaseLost
from bus.keys import Keys
from bus.redis_transport import RedisTransport, translated
from bus.settings import RedisSettings
from bus.transport import Delivery, Outcome

BUG = os.environ.get("EMBEDFLEET_MINI_BUG", "")
"""A deliberate bug, so the harness can show it catches one: ``ack_before_write``
(acknowledge, then write the output) or ``no_ownership`` (complete without the
ownership check of ``complete.lua``)."""


class FaultHooks:
    """SIGKILL this process at a named point, as ``EMBEDFLEET_FAULT_*`` ask."""

    def __init__(self) -> None:
        self.point = os.environ.get("EMBEDFLEET_FAULT_POINT", "")
        self.every = int(os.environ.get("EMBEDFLEET_FAULT_EVERY", "1") or 1)
        self.probability = float(os.environ.get("EMBEDFLEET_FAULT_PROBABILITY", "0") or 0)
        self.crash_path = os.environ.get("EMBEDFLEET_FAULT_CRASH_PATH", "")
        self.seen = 0

    def reach(self, point: str) -> None:
        if point not in self.point.split(","):
            return
        self.seen += 1
        hit = random.random() < self.probability if self.probability > 0 else self.seen % self.every == 0
        if hit:
            os.kill(os.getpid(), signal.SIGKILL)

    def job_started(self, path: str) -> None:
        if self.crash_path and self.crash_path in path:
            os.kill(os.getpid(), signal.SIGKILL)


def hash_embed(texts: list[str]) -> np.ndarray:
    """One deterministic unit vector per text (a stand-in for a model)."""
    out = np.empty((len(texts), c.EMBEDDING_DIM), dtype=np.float32)
    for i, t in enumerate(texts):
        seed = int.from_bytes(hashlib.sha256(t.encode("utf-8")).digest()[:8], "little")
        v = np.random.default_rng(seed).standard_normal(c.EMBEDDING_DIM).astype(np.float32)
        out[i] = v / np.linalg.norm(v)
    return out


class Renewer(threading.Thread):
    """Keeps one job's lease alive every lease/3; notes when it was lost."""

    def __init__(self, transport: RedisTransport, consumer: str, d: Delivery, lease_ms: int) -> None:
        super().__init__(daemon=True)
        self.t, self.consumer, self.d = transport, consumer, d
        self.every_s = lease_ms / 3000.0
        self.stopped = threading.Event()
        self.lost = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every_s):
            try:
                if not self.t.renew(self.consumer, self.d):
                    self.lost.set()
                    return
            except BusUnavailable:
                continue


class MiniWorker:
    def __init__(self, a: argparse.Namespace) -> None:
        settings = RedisSettings.from_url(a.redis_url, namespace=a.namespace)
        self.t = RedisTransport.from_settings(settings, lease_ms=a.lease_ms, autoclaim_every_s=0.25)
        self.keys = Keys(a.namespace)
        self.a = a
        self.id = a.worker_id or f"mini-{socket.gethostname()}-{os.getpid()}"
        self.lanes = a.lanes.split(",")
        self.in_root = Path(a.input_root).resolve()
        self.out_root = Path(a.output_root).resolve()
        self.hooks = FaultHooks()

    def event(self, kind: str, d: Delivery, **extra: object) -> None:
        ev = {"v": 1, "type": kind, "worker": self.id, "kind": "python", "job": d.job.id, "path": d.job.path,
              "ts_ms": int(time.time() * 1000), **extra}  # fmt: skip
        self.t.publish_event(ev)

    def up_to_date(self, out: Path, d: Delivery) -> bool:
        if not out.exists():
            return False
        meta = pq.read_schema(out).metadata or {}
        return (meta.get(b"embedfleet.input_fingerprint") == d.job.fingerprint.encode()
                and meta.get(b"embedfleet.model_id") == d.job.model.encode())  # fmt: skip

    def write(self, out: Path, d: Delivery) -> int:
        table = pq.read_table(self.in_root / d.job.path)
        texts = table.column(d.job.column).to_pylist()
        keep = [i for i, t in enumerate(texts) if t is not None]
        cols: dict[str, pa.Array] = {"row": pa.array(keep, pa.int64())}
        if d.job.id_column:
            cols["id"] = table.column(d.job.id_column).take(keep).combine_chunks()
        emb = hash_embed([texts[i] for i in keep]).reshape(-1)
        cols["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(emb, pa.float32()), c.EMBEDDING_DIM)
        meta = {"format_version": "1", "model_id": d.job.model, "normalized": "true", "input_path": d.job.path,
                "input_fingerprint": d.job.fingerprint, "row_start": "0", "row_end": str(table.num_rows),
                "job_id": d.job.id, "worker_id": self.id, "worker_kind": "python", "rows_total": str(table.num_rows),
                "rows_embedded": str(len(keep)), "rows_null": str(table.num_rows - len(keep))}  # fmt: skip
        out_table = pa.table(cols).replace_schema_metadata({f"embedfleet.{k}": v for k, v in meta.items()})
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.parent / f".{out.name}.{self.id}.{os.urandom(4).hex()}.tmp"
        pq.write_table(out_table, tmp)
        self.hooks.reach("after_tmp_write")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)
        self.hooks.reach("after_rename")
        dfd = os.open(out.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return len(keep)

    def handle(self, d: Delivery) -> None:
        if d.attempts > self.a.max_deliveries:
            reason = self.t.last_error(d.job.id) or f"worker died {d.attempts - 1} times"
            if self.t.dead_letter(self.id, d, reason, self.id) == Outcome.DONE:
                self.event("job_dead", d, error=reason)
            return
        self.hooks.job_started(d.job.path)
        if BUG == "ack_before_write":
            self.finish(d, self.t.complete(self.id, d, 0), skipped=False, rows=0)
        out = self.out_root / d.job.out
        renewer = Renewer(self.t, self.id, d, self.a.lease_ms)
        renewer.start()
        try:
            skipped = self.up_to_date(out, d)
            rows = 0 if skipped else self.write(out, d)
            if renewer.lost.is_set() and BUG != "no_ownership":
                raise LeaseLost(d.job.id)
            self.hooks.reach("before_ack")
        except LeaseLost:
            self.event("lease_lost", d)
            return
        finally:
            renewer.stopped.set()
        if BUG == "ack_before_write":
            return
        complete = self.complete_unchecked if BUG == "no_ownership" else self.t.complete
        self.finish(d, complete(self.id, d, rows, skipped=skipped), skipped, rows)

    def finish(self, d: Delivery, outcome: Outcome, skipped: bool, rows: int) -> None:
        if outcome == Outcome.DONE:
            self.event("job_skipped" if skipped else "job_done", d, rows=rows)
        elif outcome == Outcome.LEASE_LOST:
            self.event("lease_lost", d)

    def complete_unchecked(self, consumer: str, d: Delivery, rows: int, skipped: bool = False) -> Outcome:
        """A broken completion (``EMBEDFLEET_MINI_BUG=no_ownership``): acknowledges and
        counts without asking who owns the entry, or whether the job is done."""
        pipe = self.t.r.pipeline(transaction=True)
        pipe.xack(self.keys.queue(d.lane), c.GROUP, d.entry_id)
        pipe.hset(self.keys.state, d.job.id, c.STATE_DONE)
        pipe.hincrby(self.keys.stats, "done", 1)
        pipe.execute()
        return Outcome.DONE

    def idle(self) -> bool:
        """Nothing undelivered, pending anywhere, or delayed on my lanes."""
        with translated():
            return self._idle()

    def _idle(self) -> bool:
        for lane in self.lanes:
            q = self.keys.queue(lane)
            last = self.t.r.xinfo_stream(q)["last-generated-id"]
            for g in self.t.r.xinfo_groups(q):
                if g["name"] in (c.GROUP, c.GROUP.encode()):
                    if int(g["pending"]) or g["last-delivered-id"] != last:
                        return False
            if self.t.r.zcard(self.keys.delayed(lane)):
                return False
        return True

    def run(self) -> int:
        deadline = time.monotonic() + self.a.max_seconds
        self.t.ensure_lanes(self.lanes)
        while time.monotonic() < deadline:
            try:
                d = self.t.claim(self.id, self.lanes, block_ms=100)
                if d is not None:
                    self.handle(d)
                elif self.a.burst and self.idle():
                    return 0
            except BusUnavailable:
                time.sleep(0.2)
        return 3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fault.miniworker")
    p.add_argument("--redis-url", default=os.environ.get("EMBEDFLEET_REDIS_URL", "redis://127.0.0.1:6379/0"))
    p.add_argument("--namespace", default=os.environ.get("EMBEDFLEET_NAMESPACE", c.DEFAULT_NAMESPACE))
    p.add_argument("--input-root", required=True)
    p.add_argument("--output-root", required=True)
    p.add_argument("--lanes", default=c.DEFAULT_LANE)
    p.add_argument("--worker-id", default=None)
    p.add_argument("--lease-ms", type=int, default=c.DEFAULT_LEASE_MS)
    p.add_argument("--max-deliveries", type=int, default=c.DEFAULT_MAX_DELIVERIES)
    p.add_argument("--burst", action="store_true")
    p.add_argument("--max-seconds", type=float, default=120.0, help="give up (exit 3) after this long")
    return MiniWorker(p.parse_args(argv)).run()


if __name__ == "__main__":
    sys.exit(main())
