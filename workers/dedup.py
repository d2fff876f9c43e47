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
from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class Cached:
    """A vector the job already has, and its precision class."""

    vector: np.ndarray
    truncated: bool
    int8: bool = False


@dataclass
class DedupCache:
    """Text -> ``Cached`` for the texts this job already embedded or fetched."""

    max_bytes: int = 256 << 20
    used: int = 0
    entries: dict[str, Cached] = field(default_factory=dict)

    def put(self, text: str, entry: Cached) -> None:
        cost = len(text) + ENTRY_OVERHEAD
        if self.used + cost <= self.max_bytes:
            self.entries[text] = entry
            self.used += cost


def embed_rows(
    texts: Sequence[str], embedder: Embedder, cache: DedupCache, reuse: FleetReuse | None = None
) -> Deduplicated:
    """Embed the rows of one chunk, each distinct new text once in the fleet
    (once in the job when ``reuse`` is ``None``)."""
    reuse = reuse or FleetReuse(None, embedder.model_id, embedder.precision, owner="")
    slot: dict[str, int] = {}
    inverse = np.empty(len(texts), dtype=np.int64)
    for i, text in enumerate(texts):
        inverse[i] = slot.setdefault(text, len(slot))
    distinct = list(slot)
    n = len(distinct)
    vectors = np.empty((n, EMBEDDING_DIM), dtype=np.float32)
    truncated = np.zeros(n, dtype=bool)
    reused = np.zeros(n, dtype=bool)
    """Answered by the store in this chunk (a job's later rows of a text count
    as deduplicated, wherever its vector came from)."""
    int8 = np.zeros(n, dtype=bool)
    todo = []
    for j, text in enumerate(distinct):
        hit = cache.entries.get(text)
        if hit is None:
            todo.append(j)
        else:
            vectors[j], truncated[j], int8[j] = hit.vector, hit.truncated, hit.int8
    model_calls = 0
    if todo:
        got = reuse.embed([distinct[j] for j in todo], embedder)
        vectors[todo] = got.embeddings
        truncated[todo] = got.truncated
        reused[todo] = got.reused
        int8[todo] = got.int8
        model_calls = got.model_calls
        for j in todo:
            cache.put(distinct[j], Cached(vectors[j].copy(), bool(truncated[j]), bool(int8[j])))
    rows_reused = int(reused[todo].sum())
    return Deduplicated(
        vectors[inverse],
        int(truncated[inverse].sum()),
        len(texts) - model_calls - rows_reused,
        rows_reused,
        int(int8[inverse].sum()),
        model_calls,
    )
