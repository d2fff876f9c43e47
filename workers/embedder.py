# Twin: rust/worker/src/stand_in.rs (docs/parity.md)
"""What the pipeline needs from a model, and a deterministic stand-in.

``Embedder.encode`` takes distinct texts and returns their L2-normalised
float32 embeddings plus, per text, whether it was truncated at the model's
256 tokens. ``SentenceTransformerEmbedder`` (``workers.st_embedder``) is the
real one; ``HashEmbedder`` is a fast deterministic one for tests of the
worker logic and for bus benchmarks (a "no-op" model).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from bus.constants import EMBEDDING_DIM, MAX_SEQ_LENGTH


@dataclass(frozen=True)
class Encoded:
    """Embeddings of ``n`` texts, shape ``(n, 384)``, and which were truncated."""

    embeddings: np.ndarray
    truncated: np.ndarray


class Embedder(Protocol):
    """A loaded model that turns texts into normalised embeddings."""

    model_id: str
    device: str
    precision: str

    def encode(self, texts: Sequence[str]) -> Encoded:
        """Embed distinct texts (any order); rows follow ``texts``."""
        ...


class AsyncEmbedder(Embedder, Protocol):
    """An embedder that can queue work on its device and return at once
    (``submit``): the caller prepares the next batch while the device computes.
    Embedders without it run on a device thread of the pipeline instead."""

    def submit(self, texts: Sequence[str]) -> Future[Encoded]:
        """Queue distinct texts; their ``Encoded`` once the device has computed them."""
        ...


class HashEmbedder:
    """Deterministic pseudo-embeddings from a hash of each text.

    Not a model: it stands in for one where only the bus and the data path are
    under test. ``seconds_per_row`` simulates a model's cost. A text counts as
    truncated when it has more than 254 whitespace-separated words."""

    device = "cpu"
    precision = "fp32"

    def __init__(self, model_id: str, seconds_per_row: float = 0.0) -> None:
        self.model_id = model_id
        self.seconds_per_row = seconds_per_row
        self.calls: list[int] = []

    def encode(self, texts: Sequence[str]) -> Encoded:
        self.calls.append(len(texts))
        if self.seconds_per_row:
            time.sleep(self.seconds_per_row * len(texts))
        out = np.empty((len(texts), EMBEDDING_DIM), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")
            v = np.random.default_rng(seed).standard_normal(EMBEDDING_DIM).astype(np.float32)
            out[i] = v / np.linalg.norm(v)
        truncated = np.array([len(t.split()) > MAX_SEQ_LENGTH - 2 for t in texts], dtype=bool)
        return Encoded(out, truncated)
