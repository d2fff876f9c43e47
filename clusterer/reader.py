"""Stream embeddings and row keys out of the outputs within bounded memory.

Embeddings are read one record batch at a time (pyarrow, zero-copy into
numpy) and handed to a callback, so a pass over millions of rows holds one
batch of 384-dimensional vectors at a time; callers keep only what they
reduce it to, or only the rows they select (one per distinct text). Row keys
go through polars' lazy scan.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from clusterer.catalog import EmbeddingPart
from clusterer.progress import Progress

BATCH_ROWS = 32_768


def iter_embeddings(
    parts: list[EmbeddingPart], batch_rows: int = BATCH_ROWS, skip: Callable[[int, int], bool] | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """``(offset, float32 array)`` batches over all parts, in catalog order; a part for which
    ``skip(offset, rows)`` is true is not opened."""
    offset = 0
    for part in parts:
        if skip is not None and skip(offset, part.rows):
            offset += part.rows
            continue
        pf = pq.ParquetFile(part.path)
        for batch in pf.iter_batches(batch_size=batch_rows, columns=["embedding"]):
            col = batch.column(0)
            if col.null_count:
                raise ValueError(f"{part.rel}: {col.null_count} null embeddings")
            values = col.flatten().to_numpy(zero_copy_only=False)
            arr = values.reshape(len(col), part.dim).astype(np.float32, copy=False)
            yield offset, arr
            offset += len(arr)


def stream(
    parts: list[EmbeddingPart],
    consume: Callable[[int, np.ndarray], None],
    progress: Progress,
    what: str,
    select: np.ndarray | None = None,
) -> None:
    """Feed every batch to ``consume``, reporting progress.

    With ``select`` (sorted global row positions), only those rows are fed,
    and ``consume`` gets their offset within ``select``; outputs holding none
    of them are not read."""
    total = sum(p.rows for p in parts)
    done = 0

    def nothing_selected(offset: int, rows: int) -> bool:
        assert select is not None
        lo, hi = np.searchsorted(select, [offset, offset + rows])
        return bool(hi == lo)

    for offset, arr in iter_embeddings(parts, skip=nothing_selected if select is not None else None):
        done = offset + len(arr)
        if select is None:
            consume(offset, arr)
        else:
            lo, hi = np.searchsorted(select, [offset, done])
            if hi > lo:
                consume(int(lo), arr[select[lo:hi] - offset])
        progress.count(what, done, total)
    progress.count(what, done, total, force=True)


def gather(parts: list[EmbeddingPart], index: np.ndarray, progress: Progress, what: str) -> np.ndarray:
    """The embeddings at sorted global positions ``index``, as one array."""
    dim = parts[0].dim if parts else 0
    out = np.empty((len(index), dim), dtype=np.float32)

    def take(lo: int, arr: np.ndarray) -> None:
        out[lo : lo + len(arr)] = arr

    stream(parts, take, progress, what, select=index)
    return out


def read_keys(parts: list[EmbeddingPart]) -> pl.DataFrame:
    """``input_path``, ``row`` (and ``id`` as text when the outputs have one),
    in the same order as ``iter_embeddings``."""
    has_id = any(p.id_type is not None for p in parts)
    frames = []
    for p in parts:
        cols = [pl.lit(p.input_path).cast(pl.Categorical).alias("input_path"), pl.col("row").cast(pl.Int64)]
        if has_id:
            idcol = pl.col("id").cast(pl.String) if p.id_type is not None else pl.lit(None, dtype=pl.String)
            cols.append(idcol.alias("id"))
        frames.append(pl.scan_parquet(p.path).select(cols))
    if not frames:
        return pl.DataFrame({"input_path": [], "row": []}, schema={"input_path": pl.Categorical, "row": pl.Int64})
    return pl.concat(frames, how="vertical").collect()
