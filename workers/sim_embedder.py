"""A stand-in that does everything the real embedder does except the model
(``--embedder simulated``): for benchmarks of the data path at accelerator
rates on a machine without one, and for tests.

Texts are tokenized with the model's own tokenizer (``tokenizer.json`` of the
installed model package; no torch import), truncated as sentence-transformers
truncates, sorted by length, cut into batches under the device's token budget
and padded as for the device. Each batch then goes to a ``SimulatedDevice``:
a thread that "computes" by sleeping the batch's cost (off the CPU, without
the GIL) and returns deterministic unit vectors derived from each text.
While the device computes batch n the caller pads batch n+1, as the CUDA path
of ``SentenceTransformerEmbedder`` does.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from bus.constants import EMBEDDING_DIM
from workers.embedder import Encoded
from workers.st_embedder import GPU_MAX_TOKEN_BUDGET, MAX_BATCH, ModelTokenizer, pad, plan_batches

SIM_TOKEN_BUDGET = 1 << 16
"""Tokens per batch on the simulated device (a large GPU's batches;
``GPU_MAX_TOKEN_BUDGET`` is the real embedder's ceiling)."""

T = TypeVar("T")

_LANES = np.arange(EMBEDDING_DIM, dtype=np.uint64) * np.uint64(0x9E37_79B9_7F4A_7C15)


def seeds(texts: Sequence[str]) -> np.ndarray:
    """A 64-bit seed per text (BLAKE2b of its UTF-8 bytes)."""
    digest = b"".join(hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=8).digest() for t in texts)
    return np.frombuffer(digest, dtype="<u8").astype(np.uint64)


def seed_vectors(s: np.ndarray) -> np.ndarray:
    """Deterministic unit vectors, one per seed, shape ``(n, 384)`` (vectorised)."""
    with np.errstate(over="ignore"):
        x = s[:, None] ^ _LANES[None, :]
        x *= np.uint64(0xFF51_AFD7_ED55_8CCD)
        x ^= x >> np.uint64(33)
        x *= np.uint64(0xC4CE_B9FE_1A85_EC53)
    v = (x >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / (1 << 24)) - np.float32(0.5)
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), np.float32(1e-12))
    return v


@dataclass
class DeviceStats:
    """What the simulated device did: batches, rows, padded tokens, busy seconds."""

    batches: int = 0
    rows: int = 0
    tokens: int = 0
    busy_s: float = 0.0


class SimulatedDevice:
    """A device with its own clock: each batch costs ``us_per_token`` per padded
    token, or ``1 / rows_per_second`` per row when that is set; 0 costs nothing
    (the data path's ceiling). Batches run one at a time, in order."""

    def __init__(self, us_per_token: float = 0.0, rows_per_second: float = 0.0) -> None:
        self.us_per_token = max(0.0, us_per_token)
        self.rows_per_second = max(0.0, rows_per_second)
        self.stats = DeviceStats()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sim-device")

    def cost(self, rows: int, padded_tokens: int) -> float:
        if self.rows_per_second:
            return rows / self.rows_per_second
        return padded_tokens * self.us_per_token * 1e-6

    def submit(self, input_ids: np.ndarray, mask: np.ndarray, batch_seeds: np.ndarray) -> Future[np.ndarray]:
        """Queue one padded batch; its vectors when the device has "computed" it."""
        return self._pool.submit(self._compute, input_ids, mask, batch_seeds)

    def after(self, fn: Callable[[], T]) -> Future[T]:
        """Run ``fn`` on the device once every batch queued before it is done."""
        return self._pool.submit(fn)

    def _compute(self, input_ids: np.ndarray, mask: np.ndarray, batch_seeds: np.ndarray) -> np.ndarray:
        rows, seq_len = input_ids.shape
        cost = self.cost(rows, rows * seq_len)
        if cost > 0:
            time.sleep(cost)
        with self._lock:
            self.stats.batches += 1
            self.stats.rows += rows
            self.stats.tokens += rows * seq_len
            self.stats.busy_s += cost
        return seed_vectors(batch_seeds)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class SimulatedEmbedder:
    """``Embedder`` over the real tokenizer and a ``SimulatedDevice``."""

    device = "sim"
    precision = "fp32"

    def __init__(
        self,
        model_id: str,
        model_dir: Path,
        us_per_token: float = 0.0,
        rows_per_second: float = 0.0,
        token_budget: int | None = None,
    ) -> None:
        self.model_id = model_id
        self.tokens = ModelTokenizer.from_dir(model_dir)
        self.sim = SimulatedDevice(us_per_token, rows_per_second)
        self.token_budget = min(token_budget or SIM_TOKEN_BUDGET, GPU_MAX_TOKEN_BUDGET)
        self.max_batch = MAX_BATCH["cuda"]
        self.pad_id = 0
        self.calls: list[int] = []

    def prepare(self, texts: Sequence[str]) -> None:
        """Tokenize texts ahead of ``encode`` (the pipeline's reader thread calls it)."""
        self.tokens.prepare(texts)

    def encode(self, texts: Sequence[str]) -> Encoded:
        return self.submit(texts).result()

    def submit(self, texts: Sequence[str]) -> Future[Encoded]:
        """Tokenize, pad and queue ``texts`` on the device; their vectors when
        it has computed them. The host work is done here, on the caller's
        thread, while the device may still be busy with earlier batches: how a
        GPU is fed (kernels queued on a stream, the host preparing the next)."""
        self.calls.append(len(texts))
        ids, truncated = self.tokens.tokenize(texts)
        s = seeds(texts)
        running: list[tuple[np.ndarray, Future[np.ndarray]]] = []
        budget = self.token_budget
        for idx in plan_batches([len(x) for x in ids], self.max_batch, lambda _n: budget):
            input_ids, mask = pad([ids[i] for i in idx], self.pad_id)
            running.append((idx, self.sim.submit(input_ids, mask, s[idx])))

        def gather() -> Encoded:  # runs on the device after every batch above: each result is ready
            out = np.empty((len(texts), EMBEDDING_DIM), dtype=np.float32)
            for idx, f in running:
                out[idx] = f.result()
            return Encoded(out, truncated)

        return self.sim.after(gather)
