"""Input and output trees for the scan and enqueue tests: parquet inputs, the
outputs a worker would have written, and both scanners' raw results."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import redis

from bus.keys import Keys
from bus.messages import Job
from manager import _core, scan
from tests.support import pyscan

MODEL = "all-MiniLM-L6-v2@00000000deadbeef"
"""The model id every tree is scanned for."""


class Tree:
    """An input and an output root under one temporary directory."""

    def __init__(self, root: Path) -> None:
        self.input = root / "in"
        self.output = root / "out"
        (self.input / "chains").mkdir(parents=True)

    def add_input(self, rel: str, rows: int = 3, row_group: int | None = None, tag: str = "") -> Path:
        path = self.input / "chains" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.table({"id": [f"{rel}:{i}" for i in range(rows)], "text": [f"{tag}text {i}" for i in range(rows)]})
        pq.write_table(table, path, row_group_size=row_group or max(rows, 1))
        return path

    def fingerprint(self, rel: str) -> str:
        st = os.stat(self.input / "chains" / rel)
        return f"{st.st_size}-{st.st_mtime_ns}"

    def add_output(
        self, rel: str, rows: tuple[int, int] | None = None, model: str = MODEL, fingerprint: str | None = None
    ) -> Path:
        """The output a worker would have written for input ``chains/<rel>``."""
        fp = fingerprint or self.fingerprint(rel)
        job = Job.create(f"chains/{rel}", fp, model, rows)
        meta = {"embedfleet.input_fingerprint": fp, "embedfleet.model_id": model, "embedfleet.format_version": "1"}
        table = pa.table({"row": pa.array([0], pa.int64())}).replace_schema_metadata(meta)
        path = self.output / job.out
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        return path

    def plan(self, **kw: Any) -> scan.Plan:
        return scan.plan(self.input, self.output, MODEL, **kw)

    def raw(self, rows_per_part: int = 1000, subreddits: list[str] | None = None) -> tuple[Any, Any]:
        """The Rust and the Python scanner's raw results (Rust without cache)."""
        rust = _core.scan(
            str(self.input),
            str(self.output),
            MODEL,
            rows_per_part=rows_per_part,
            subreddits=subreddits,
            use_cache=False,
        )
        py = pyscan.scan(self.input, self.output, MODEL, rows_per_part=rows_per_part, subreddits=subreddits)
        return rust, py


def tree_jobs(n: int, lane: str = "default", prefix: str = "p") -> list[Job]:
    """``n`` jobs of made-up inputs across seven subreddits, on ``lane``."""
    return [
        Job.create(f"chains/2024-01/sub{i % 7}/{prefix}-{i:05d}.parquet", f"{1000 + i}-17", MODEL, lane=lane)
        for i in range(n)
    ]


def stream_jobs(client: redis.Redis, keys: Keys, lane: str = "default") -> list[str]:
    """The job messages on a lane's stream, in order."""
    entries: Any = client.xrange(keys.queue(lane))
    return [f[b"job"].decode() for _, f in entries]
