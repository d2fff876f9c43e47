# Twin: rust/worker/src/output.rs (docs/parity.md)
"""The output file of a job: ``row`` int64, optional ``id``, ``embedding``
``FixedSizeList<float32, 384>``, provenance in the key-value metadata.

Written chunk by chunk to a hidden per-attempt temporary name in the output
directory (``.<name>.<worker>.<job8>.<random>.tmp``, created with the first
rows: ``workers.temps``), fsynced, renamed into place and the directory
fsynced, so a reader never sees a torn file. ``is_up_to_date`` is the check
that lets a re-delivered job be acknowledged without recomputing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bus.constants import EMBEDDING_DIM, META_PREFIX, OUTPUT_FORMAT_VERSION
from bus.messages import Job
from workers import faults
from workers.cleaning import Counts
from workers.paths import fsync_dir
from workers.temps import temp_path


@dataclass(frozen=True)
class Provenance:
    """Who produced an output, and how."""

    worker_id: str
    worker_kind: str
    device: str
    precision: str
    software_version: str


def metadata(job: Job, part_range: tuple[int, int], prov: Provenance, counts: Counts) -> dict[str, str]:
    """The ``embedfleet.*`` key-value metadata of an output."""
    meta = {
        "format_version": str(OUTPUT_FORMAT_VERSION),
        "model_id": job.model,
        "normalized": "true",
        "input_path": job.path,
        "input_fingerprint": job.fingerprint,
        "row_start": str(part_range[0]),
        "row_end": str(part_range[1]),
        "job_id": job.id,
        "worker_id": prov.worker_id,
        "worker_kind": prov.worker_kind,
        "device": prov.device,
        "precision": prov.precision,
        "software_version": prov.software_version,
        **{k: str(v) for k, v in counts.as_dict().items()},
    }
    return {META_PREFIX + k: v for k, v in meta.items()}


def read_metadata(path: Path) -> dict[str, str]:
    """The ``embedfleet.*`` metadata of an existing output ({} if unreadable)."""
    try:
        raw = pq.read_metadata(path).metadata or {}
    except (OSError, pa.ArrowException, ValueError):
        return {}
    out = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in raw.items()}
    return {k: v for k, v in out.items() if k.startswith(META_PREFIX)}


def is_up_to_date(path: Path, job: Job) -> dict[str, str] | None:
    """The output's metadata when it exists for the same input fingerprint and model."""
    if not path.is_file():
        return None
    meta = read_metadata(path)
    same_input = meta.get(META_PREFIX + "input_fingerprint") == job.fingerprint
    same_model = meta.get(META_PREFIX + "model_id") == job.model
    return meta if same_input and same_model else None


def output_schema(id_type: pa.DataType | None) -> pa.Schema:
    fields = [pa.field("row", pa.int64(), nullable=False)]
    if id_type is not None:
        fields.append(pa.field("id", id_type))
    fields.append(pa.field("embedding", pa.list_(pa.float32(), EMBEDDING_DIM), nullable=False))
    return pa.schema(fields)


class OutputWriter:
    """Writes one output atomically; use as a context manager (aborts on error).

    The temporary file exists only from the first ``write`` (or ``commit``,
    for an output without rows) until the rename: a worker killed before it
    wrote anything leaves nothing behind."""

    def __init__(self, final: Path, worker_id: str, id_type: pa.DataType | None, job_id: str = "") -> None:
        self.final = final
        self.tmp = temp_path(final, worker_id, job_id or "0" * 8)
        self.schema = output_schema(id_type)
        self._writer: pq.ParquetWriter | None = None
        self._closed = False

    def _open(self) -> pq.ParquetWriter:
        assert not self._closed, "writer already closed"
        if self._writer is None:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.tmp, self.schema, compression="zstd")
        return self._writer

    def write(self, rows: np.ndarray, ids: pa.Array | None, embeddings: np.ndarray) -> None:
        """Append rows (absolute row numbers, ids, L2-normalised float32 vectors)."""
        writer = self._open()
        emb = np.ascontiguousarray(embeddings, dtype=np.float32).reshape(-1)
        cols: list[pa.Array] = [pa.array(rows, pa.int64())]
        if "id" in self.schema.names:
            cols.append(ids if ids is not None else pa.nulls(len(rows), self.schema.field("id").type))
        cols.append(pa.FixedSizeListArray.from_arrays(pa.array(emb, pa.float32()), EMBEDDING_DIM))
        writer.write_table(pa.Table.from_arrays(cols, schema=self.schema))

    def commit(self, meta: dict[str, str]) -> None:
        """Close, fsync and rename into place; the output then exists in full."""
        writer = self._open()
        writer.add_key_value_metadata(meta)
        writer.close()
        self._writer, self._closed = None, True
        faults.reach("after_tmp_write")
        with open(self.tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(self.tmp, self.final)
        faults.reach("after_rename")
        fsync_dir(self.final.parent)

    def abort(self) -> None:
        """Drop the temporary file; the final name is never touched."""
        if self._writer is not None:
            try:
                self._writer.close()
            except (OSError, pa.ArrowException):
                pass
            self._writer = None
        self._closed = True
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> OutputWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()
