# Twin: rust/worker/src/reuse/fleet.rs (docs/parity.md)
"""Fleet-wide reuse: a distinct text costs one model call in the whole fleet.

``FleetReuse.embed`` takes the distinct texts of a chunk that the job has not
seen yet, answers what it can from the reuse store, claims the rest round by
round, computes what it claimed and stores it, then waits for the texts
other workers are computing (``docs/reuse.md``). Any store fault turns the
store off for the rest of the job: the texts are computed here instead, so
the store can only save work. Twin: ``rust/worker/src/reuse.rs``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from bus import constants as c
from bus.errors import BusUnavailable
from bus.reuse import ReuseStore, acceptable_classes, decode_entry, encode_entry, precision_class
from bus.textkey import keys_and_lengths
from workers.embedder import Embedder

log = logging.getLogger(__name__)

POLL_FIRST_S = 0.01
POLL_MAX_S = 0.2


@dataclass
class Resolved:
    """Vectors of distinct texts, in the order given, and where they came from."""

    embeddings: np.ndarray
    truncated: np.ndarray
    reused: np.ndarray
    """True where the vector came from the store."""
    int8: np.ndarray
    """True where the vector is of the int8 class."""
    model_calls: int


class FleetReuse:
    """One job's view of the reuse store (``store=None``: reuse switched off)."""

    def __init__(
        self,
        store: ReuseStore | None,
        model_id: str,
        precision: str,
        owner: str,
        checkpoint: Callable[[], None] = lambda: None,
        round_texts: int = c.REUSE_ROUND_TEXTS,
    ) -> None:
        self.store = store
        self.model_id = model_id
        self.own = precision_class(precision)
        self.classes = acceptable_classes(self.own)
        self.owner = owner
        self.checkpoint = checkpoint
        self.round_texts = round_texts

    def embed(self, texts: Sequence[str], embedder: Embedder) -> Resolved:
        n = len(texts)
        out = Resolved(
            np.empty((n, c.EMBEDDING_DIM), dtype=np.float32),
            np.zeros(n, dtype=bool),
            np.zeros(n, dtype=bool),
            np.zeros(n, dtype=bool),
            0,
        )
        if self.store is None:
            self._compute(texts, list(range(n)), embedder, out)
            return out
        keys, lengths = keys_and_lengths(self.model_id, texts)
        todo = self._from_lookup(keys, lengths, out)
        todo.sort(key=lambda i: (lengths[i], keys[i]))
        waiting: list[int] = []
        for start in range(0, len(todo), self.round_texts):
            waiting += self._round(texts, keys, lengths, todo[start : start + self.round_texts], embedder, out)
        self._wait(texts, keys, lengths, waiting, embedder, out)
        return out

    # -- store steps; a fault switches the store off and computes instead -----
    def _from_lookup(self, keys: list[bytes], lengths: list[int], out: Resolved) -> list[int]:
        assert self.store is not None
        try:
            values = self.store.lookup(keys, self.classes)
        except BusUnavailable as e:
            self._off(e)
            return list(range(len(keys)))
        return [i for i, v in enumerate(values) if not self._take(v, i, lengths[i], out)]

    def _round(
        self,
        texts: Sequence[str],
        keys: list[bytes],
        lengths: list[int],
        idx: list[int],
        embedder: Embedder,
        out: Resolved,
    ) -> list[int]:
        """Claim ``idx``, compute what this worker holds; return the rest."""
        if self.store is None:
            self._compute(texts, idx, embedder, out)
            return []
        try:
            answers = self.store.claim([keys[i] for i in idx], self.classes, self.owner)
        except BusUnavailable as e:
            self._off(e)
            self._compute(texts, idx, embedder, out)
            return []
        mine: list[int] = []
        others: list[int] = []
        for i, a in zip(idx, answers, strict=True):
            if a.value is not None and self._take(a.value, i, lengths[i], out):
                continue
            (mine if a.mine or a.value is not None else others).append(i)
        self._compute_and_put(texts, keys, mine, embedder, out)
        return others

    def _wait(
        self,
        texts: Sequence[str],
        keys: list[bytes],
        lengths: list[int],
        waiting: list[int],
        embedder: Embedder,
        out: Resolved,
    ) -> None:
        """Ask again for texts other workers hold until each arrives or its
        claim lapses and this worker computes it."""
        pause = POLL_FIRST_S
        while waiting:
            time.sleep(pause)
            pause = min(pause * 2, POLL_MAX_S)
            self.checkpoint()
            waiting = self._round(texts, keys, lengths, waiting, embedder, out)

    def _take(self, value: bytes | None, i: int, length: int, out: Resolved) -> bool:
        if value is None:
            return False
        entry = decode_entry(value, self.classes, length)
        if entry is None:
            log.warning("reuse store: ignoring an invalid entry (it will be recomputed and replaced)")
            return False
        out.embeddings[i] = entry.vector
        out.truncated[i] = entry.truncated
        out.reused[i] = True
        out.int8[i] = entry.cls == c.REUSE_CLASS_INT8
        return True

    def _compute_and_put(
        self, texts: Sequence[str], keys: list[bytes], idx: list[int], embedder: Embedder, out: Resolved
    ) -> None:
        if not idx:
            return
        try:
            self._compute(texts, idx, embedder, out)
        except BaseException:
            self._release([keys[i] for i in idx])
            raise
        if self.store is None:
            return
        values = [
            encode_entry(self.own, out.embeddings[i], bool(out.truncated[i]), len(texts[i].encode("utf-8")))
            for i in idx
        ]
        try:
            self.store.put(self.own, [keys[i] for i in idx], values, self.owner)
        except BusUnavailable as e:
            self._off(e)

    def _compute(self, texts: Sequence[str], idx: list[int], embedder: Embedder, out: Resolved) -> None:
        if not idx:
            return
        enc = embedder.encode([texts[i] for i in idx])
        out.embeddings[idx] = enc.embeddings
        out.truncated[idx] = enc.truncated
        out.int8[idx] = self.own == c.REUSE_CLASS_INT8
        out.model_calls += len(idx)

    def _release(self, keys: list[bytes]) -> None:
        if self.store is None:
            return
        try:
            self.store.put(self.own, keys, [b""] * len(keys), self.owner)
        except BusUnavailable as e:
            self._off(e)

    def _off(self, e: BusUnavailable) -> None:
        log.warning("reuse store unavailable (%s): computing every text of this job here", e)
        self.store = None
