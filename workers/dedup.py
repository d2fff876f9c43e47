# Twin: rust/worker/src/batching.rs (docs/parity.md)
"""Deduplication of the texts of a job, then fleet-wide reuse.

Chains repeat their ancestors' texts, so the same text recurs across the
rows of a part. A job-local cache keyed by the text itself (no hash, so no
collision) carries vectors from one chunk to the next, up to a byte budget;
past it, texts are still deduplicated within each chunk. What the job has
not seen goes to ``FleetReuse``, which answers from the fleet's reuse store
or computes (``docs/reuse.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat

import numpy as np

from bus.constants import EMBEDDING_DIM
from workers.embedder import Embedder
from workers.reuse import FleetReuse

ENTRY_OVERHEAD = EMBEDDING_DIM * 4 + 200
"""Bytes a cached entry costs besides its text (vector, dict slot, objects)."""


@dataclass
class Deduplicated:
    """Embeddings of every row of a chunk, in row order, and the counts, which
    split the rows in three: ``model_calls`` (a text's first row in the job,
    sent to the model), ``rows_reused`` (a text's first row in the job,
    answered by the reuse store) and ``rows_deduplicated`` (a later row of a
    text the job already had). ``rows_int8`` rows have an int8 vector."""

    embeddings: np.ndarray
    rows_truncated: int
    rows_deduplicated: int
    rows_reused: int = 0
    rows_int8: int = 0
    model_calls: int = 0


class DedupCache:
    """Text -> vector for the texts this job already embedded or fetched.

    ``entries`` maps a text to its row in the cache's own arrays, which grow by
    doubling; filling and reading take whole chunks at a time (no object per
    text), since at accelerator rates this bookkeeping is on the critical path.
    Texts are kept in the order given until the next one would pass the budget.
    """

    def __init__(self, max_bytes: int = 256 << 20) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self.entries: dict[str, int] = {}
        self._vectors = np.empty((0, EMBEDDING_DIM), dtype=np.float32)
        self._truncated = np.zeros(0, dtype=bool)
        self._int8 = np.zeros(0, dtype=bool)

    def add(self, texts: Sequence[str], vectors: np.ndarray, truncated: np.ndarray, int8: np.ndarray) -> None:
        """Keep ``texts`` (all new to the cache) with their vectors, as far as the budget goes."""
        if not texts or self.used >= self.max_bytes:
            return
        costs = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)) + ENTRY_OVERHEAD
        total = np.cumsum(costs)
        k = int(np.searchsorted(total, self.max_bytes - self.used, side="right"))
        if k == 0:
            return
        base = len(self.entries)
        self._grow(base + k)
        self._vectors[base : base + k] = vectors[:k]
        self._truncated[base : base + k] = truncated[:k]
        self._int8[base : base + k] = int8[:k]
        self.entries.update(zip(texts[:k], range(base, base + k), strict=True))
        self.used += int(total[k - 1])

    def rows(self, texts: Sequence[str]) -> np.ndarray:
        """Each text's row in the cache, -1 where it has none."""
        return np.fromiter(map(self.entries.get, texts, repeat(-1)), dtype=np.int64, count=len(texts))

    def fill(
        self, rows: np.ndarray, vectors: np.ndarray, truncated: np.ndarray, int8: np.ndarray, at: np.ndarray
    ) -> None:
        """Copy cached rows ``rows`` into positions ``at`` of the given arrays."""
        vectors[at] = self._vectors[rows]
        truncated[at] = self._truncated[rows]
        int8[at] = self._int8[rows]

    def _grow(self, need: int) -> None:
        have = len(self._truncated)
        if need <= have:
            return
        cap = max(need, 2 * have, 1024)
        vectors = np.empty((cap, EMBEDDING_DIM), dtype=np.float32)
        vectors[:have] = self._vectors
        self._vectors = vectors
        self._truncated = np.concatenate([self._truncated, np.zeros(cap - have, dtype=bool)])
        self._int8 = np.concatenate([self._int8, np.zeros(cap - have, dtype=bool)])


def embed_rows(
    texts: Sequence[str], embedder: Embedder, cache: DedupCache, reuse: FleetReuse | None = None
) -> Deduplicated:
    """Embed the rows of one chunk, each distinct new text once in the fleet
    (once in the job when ``reuse`` is ``None``)."""
    reuse = reuse or FleetReuse(None, embedder.model_id, embedder.precision, owner="")
    distinct = list(dict.fromkeys(texts))
    n = len(distinct)
    slot = dict(zip(distinct, range(n), strict=True))
    inverse = np.fromiter(map(slot.__getitem__, texts), dtype=np.int64, count=len(texts))
    vectors = np.empty((n, EMBEDDING_DIM), dtype=np.float32)
    truncated = np.zeros(n, dtype=bool)
    reused = np.zeros(n, dtype=bool)
    """Answered by the store in this chunk (a job's later rows of a text count
    as deduplicated, wherever its vector came from)."""
    int8 = np.zeros(n, dtype=bool)
    rows = cache.rows(distinct)
    known = rows >= 0
    if known.any():
        cache.fill(rows[known], vectors, truncated, int8, np.flatnonzero(known))
    todo = np.flatnonzero(~known)
    model_calls = 0
    if todo.size:
        new = [distinct[j] for j in todo.tolist()]
        got = reuse.embed(new, embedder)
        vectors[todo] = got.embeddings
        truncated[todo] = got.truncated
        reused[todo] = got.reused
        int8[todo] = got.int8
        model_calls = got.model_calls
        cache.add(new, got.embeddings, got.truncated, got.int8)
    rows_reused = int(reused[todo].sum())
    return Deduplicated(
        vectors[inverse],
        int(truncated[inverse].sum()),
        len(texts) - model_calls - rows_reused,
        rows_reused,
        int(int8[inverse].sum()),
        model_calls,
    )
