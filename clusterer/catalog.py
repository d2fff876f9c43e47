"""The embedding outputs of a run: found on disk, described by their footers.

Only Parquet footers are read here (schema, row count, key-value metadata),
never the data, so cataloguing a run of millions of rows takes seconds.
Hidden files (the workers' ``.<name>.<worker>.<random>.tmp``) are ignored.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bus.constants import META_PREFIX, OUTPUT_DIR


@dataclass(frozen=True)
class EmbeddingPart:
    """One output file: which input rows it embeds, with which model."""

    path: Path
    rel: str
    input_path: str
    fingerprint: str
    model: str
    row_start: int
    row_end: int
    rows: int
    dim: int
    id_type: pa.DataType | None


@dataclass
class Catalog:
    """Every readable output, and the files that could not be used."""

    parts: list[EmbeddingPart]
    broken: list[str]

    @property
    def models(self) -> set[str]:
        return {p.model for p in self.parts}


def walk_parquet(root: Path) -> Iterator[Path]:
    """Every visible ``*.parquet`` file under ``root``, in a stable order."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.endswith(".parquet") and not name.startswith("."):
                yield Path(dirpath) / name


def _meta(pf: pq.ParquetFile) -> dict[str, str]:
    """Provenance from the footer's key-value metadata, where both workers write
    it (the Arrow schema's metadata is read too, for files written with it)."""
    raw = {**(pf.schema_arrow.metadata or {}), **(pf.metadata.metadata or {})}
    return {k.decode(): v.decode() for k, v in raw.items() if k.startswith(META_PREFIX.encode())}


def describe(path: Path, rel: str) -> EmbeddingPart:
    """Read one output's footer; ``ValueError`` naming the problem if unusable."""
    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as e:
        raise ValueError(f"{rel}: not a readable Parquet file ({e})") from None
    schema = pf.schema_arrow
    meta = _meta(pf)
    if "embedding" not in schema.names or "row" not in schema.names:
        raise ValueError(f"{rel}: lacks the row or embedding column")
    emb = schema.field("embedding").type
    if not pa.types.is_fixed_size_list(emb) or not pa.types.is_floating(emb.value_type):
        raise ValueError(f"{rel}: embedding column is {emb}, not a fixed-size list of floats")
    key = META_PREFIX + "input_path"
    if key not in meta:
        raise ValueError(f"{rel}: no {key} in its metadata (not an embedfleet output)")
    rows = pf.metadata.num_rows
    return EmbeddingPart(
        path=path,
        rel=rel,
        input_path=meta[key],
        fingerprint=meta.get(META_PREFIX + "input_fingerprint", ""),
        model=meta.get(META_PREFIX + "model_id", ""),
        row_start=int(meta.get(META_PREFIX + "row_start", 0)),
        row_end=int(meta.get(META_PREFIX + "row_end", rows)),
        rows=rows,
        dim=emb.list_size,
        id_type=schema.field("id").type if "id" in schema.names else None,
    )


def load_catalog(output_root: Path) -> Catalog:
    """Describe every output under ``<output-root>/embeddings``."""
    base = output_root / OUTPUT_DIR
    parts: list[EmbeddingPart] = []
    broken: list[str] = []
    if not base.is_dir():
        return Catalog(parts, broken)
    for path in walk_parquet(base):
        rel = path.relative_to(output_root).as_posix()
        try:
            parts.append(describe(path, rel))
        except ValueError as e:
            broken.append(str(e))
    return Catalog(parts, broken)
