"""Exact deduplication within a job: identical texts are embedded once.

Chains repeat their ancestors' texts, so the same text recurs across the
rows of a part. A cache keyed by the text itself (no hash, so no collision)
carries embeddings from one chunk to the next, up to a byte budget; past it,
texts are still deduplicated within each chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from bus.constants import EMBEDDING_DIM
from workers.embedder import Embedder

ENTRY_OVERHEAD = EMBEDDING_DIM * 4 + 200
"""Bytes a cached entry costs besides its text (vector, dict slot, objects)."""


@dataclass
class Deduplicated:
    """Embeddings of every row of a chunk, in row order, and the counts."""

    embeddings: np.ndarray
    rows_truncated: int
    rows_deduplicated: int


@dataclass
class DedupCache:
    """Text -> (embedding, truncated) for the texts already embedded in a job."""

    max_bytes: int = 256 << 20
    used: int = 0
    entries: dict[str, tuple[np.ndarray, bool]] = field(default_factory=dict)

    def put(self, text: str, vector: np.ndarray, truncated: bool) -> None:
        cost = len(text) + ENTRY_OVERHEAD
        if self.used + cost <= self.max_bytes:
            self.entries[text] = (vector, truncated)
            self.used += cost


def embed_rows(texts: Sequence[str], embedder: Embedder, cache: DedupCache) -> Deduplicated:
    """Embed the rows of one chunk, each distinct new text once."""
    slot: dict[str, int] = {}
    inverse = np.empty(len(texts), dtype=np.int64)
    for i, text in enumerate(texts):
        inverse[i] = slot.setdefault(text, len(slot))
    distinct = list(slot)
    vectors = np.empty((len(distinct), EMBEDDING_DIM), dtype=np.float32)
    truncated = np.zeros(len(distinct), dtype=bool)
    todo = []
    for j, text in enumerate(distinct):
        hit = cache.entries.get(text)
        if hit is None:
            todo.append(j)
        else:
            vectors[j], truncated[j] = hit
    if todo:
        enc = embedder.encode([distinct[j] for j in todo])
        vectors[todo] = enc.embeddings
        truncated[todo] = enc.truncated
        for k, j in enumerate(todo):
            cache.put(distinct[j], vectors[j].copy(), bool(enc.truncated[k]))
    return Deduplicated(vectors[inverse], int(truncated[inverse].sum()), len(texts) - len(todo))
