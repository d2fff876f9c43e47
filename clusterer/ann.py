"""The approximate nearest-neighbour index of every distinct text, saved beside
``clusters.parquet`` for ``python -m clusterer neighbours``.

faiss-cpu's inverted file with 8-bit scalar quantisation (``IVF<nlist>,SQ8``,
inner product on the unit vectors, i.e. cosine), chosen by measurement on
this project's 2-core machine (100,000 x 384 planted vectors, 500 queries,
recall@10 against exact search; ``docs/clustering.md``): it reached recall
0.968 at 0.28 ms a query and built in 11 s, where an HNSW graph (faiss or
usearch) took 17-56 s to build for recall 0.83-0.94, and hnswlib ships no
wheel (a compiler at install time). An inverted file also builds in a
stream: its cells are trained on a random subset, then vectors are added
batch by batch in the pass that already reads them, so memory stays at 384
bytes a text (about 170 MB for the 448,067 texts of the 1M benchmark).

Index ids are positions in ``neighbours.parquet`` (the text's key, its first
row, its cluster and its rows), so ``--update`` appends the new texts
without renumbering the old.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from clusterer.outputs import publish_file

INDEX_FILE = "neighbours.faiss"
TEXTS_FILE = "neighbours.parquet"
TRAIN_POINTS = 50_000
"""Vectors the cells are trained on (a uniform random subset)."""
PROBE_SHARE = 1 / 16
"""Cells searched per query (at least ``MIN_PROBES``): recall@10 was 0.968 at 1/32 of 1,024 cells on
100,000 planted vectors but 0.949 at 1/32 of 512 on 30,000; 1/16 keeps a margin."""
MIN_PROBES = 32


def cells_for(n: int) -> int:
    """Inverted-file cells for ``n`` vectors: about 4 sqrt(n), a power of two in [16, 8192],
    never more than n / 39 (faiss wants 39 training points a cell)."""
    want = 2 ** round(math.log2(max(4 * math.sqrt(max(n, 1)), 16)))
    return int(max(1, min(8192, want, n // 39)))


def probes_for(cells: int) -> int:
    return max(1, min(cells, max(MIN_PROBES, round(cells * PROBE_SHARE))))


class IndexBuilder:
    """Builds the index over ``n`` vectors in two streaming passes: ``offer`` (training subset),
    ``train``, then ``add`` (ids ascending from 0)."""

    def __init__(self, n: int, dim: int, seed: int) -> None:
        self.n, self.dim = n, dim
        self.cells = cells_for(n)
        self.rate = min(1.0, TRAIN_POINTS / max(n, 1))
        self.rng = np.random.default_rng(seed)
        self.chunks: list[np.ndarray] = []
        self.index: Any = None

    def offer(self, _lo: int, arr: np.ndarray) -> None:
        keep = self.rng.random(len(arr)) < self.rate
        if keep.any():
            self.chunks.append(np.ascontiguousarray(arr[keep], dtype=np.float32))

    def train(self) -> None:
        import faiss

        sample = np.concatenate(self.chunks) if self.chunks else np.zeros((0, self.dim), np.float32)
        self.chunks = []
        self.cells = max(1, min(self.cells, len(sample) // 39))
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, self.dim, self.cells, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        index.train(sample if len(sample) else np.zeros((1, self.dim), np.float32))
        index.nprobe = probes_for(self.cells)
        self.index = index

    def add(self, lo: int, arr: np.ndarray) -> None:
        ids = np.arange(lo, lo + len(arr), dtype=np.int64)
        self.index.add_with_ids(np.ascontiguousarray(arr, dtype=np.float32), ids)


def save_index(out: Path, index: Any, texts: pl.DataFrame) -> None:
    """The index and its texts (``text_key``, ``input_path``, ``row``, ``cluster``, ``rows``), by id."""
    import faiss

    tmp = out / f".{INDEX_FILE}.{os.getpid()}.tmp"
    faiss.write_index(index, str(tmp))
    publish_file(tmp, out / INDEX_FILE)
    tmp = out / f".{TEXTS_FILE}.{os.getpid()}.tmp"
    texts.write_parquet(tmp, compression="zstd")
    publish_file(tmp, out / TEXTS_FILE)


def load_index(out: Path) -> tuple[Any, pl.DataFrame]:
    import faiss

    path = out / INDEX_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no neighbour index in {out} ({INDEX_FILE}): run `make cluster` first")
    return faiss.read_index(str(path)), pl.read_parquet(out / TEXTS_FILE)


def search(index: Any, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Ids and cosines of the ``k`` nearest texts of each (unit) query, nearest first (-1: none)."""
    sims, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return ids, sims
