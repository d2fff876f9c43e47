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
from concurrent.futures import Executor, Future
from dataclasses import dataclass

import numpy as np

from bus import constants as c
from bus.errors import BusUnavailable
from bus.reuse import ReuseStore, acceptable_classes, decode_entry, encode_entries, precision_class
from bus.textkey import keys_and_lengths
from workers.embedder import Embedder, Encoded

log = logging.getLogger(__name__)

POLL_FIRST_S = 0.01
POLL_MAX_S = 0.2


@dataclass
class _Flight:
    """A round's own texts (indices) and the device's answer for them."""

    idx: list[int]
    done: Future[Encoded] | None


def _settle(f: _Flight) -> None:
    """Wait for a round the device may still be computing; its outcome no longer matters."""
    if f.done is not None:
        f.done.exception()


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
        device: Executor | None = None,
    ) -> None:
        self.store = store
        self.model_id = model_id
        self.own = precision_class(precision)
        self.classes = acceptable_classes(self.own)
        self.owner = owner
        self.checkpoint = checkpoint
        self.round_texts = round_texts
        self.device = device
        """One thread that runs the embedder, so the device computes a round
        while this thread claims the next and stores the last (``None``: every
        round is computed in turn on the caller's thread)."""

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
        if todo:  # shortest first, ties by key: every worker claims in the same order
            lens = np.asarray(lengths, dtype=np.int64)[todo]
            ks = np.array([keys[i] for i in todo], dtype=f"S{len(keys[0])}")
            todo = [todo[j] for j in np.lexsort((ks, lens)).tolist()]
        waiting: list[int] = []
        flight: list[_Flight] = []
        """Rounds sent to the device and not yet stored: at most two, so the
        device computes round r while round r+1 is claimed and round r-1 is
        stored (with ``device=None``, each round is computed when sent)."""
        try:
            for start in range(0, len(todo), self.round_texts):
                mine, others = self._claim(keys, lengths, todo[start : start + self.round_texts], out)
                waiting += others
                flight.append(self._send(texts, mine, embedder))
                if len(flight) == 2:
                    self._land(flight[0], keys, lengths, out)
                    flight.pop(0)
            while flight:
                self._land(flight[0], keys, lengths, out)
                flight.pop(0)
        except BaseException:
            for f in flight:  # claimed and maybe computing: let the device finish, then release
                _settle(f)
                self._release([keys[i] for i in f.idx])
            raise
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

    def _claim(
        self, keys: list[bytes], lengths: list[int], idx: list[int], out: Resolved
    ) -> tuple[list[int], list[int]]:
        """Claim ``idx``: the texts this worker computes and those another holds
        (a fault switches the store off: this worker computes them all)."""
        if self.store is None:
            return idx, []
        try:
            answers = self.store.claim([keys[i] for i in idx], self.classes, self.owner)
        except BusUnavailable as e:
            self._off(e)
            return idx, []
        mine: list[int] = []
        others: list[int] = []
        for i, a in zip(idx, answers, strict=True):
            if a.value is not None and self._take(a.value, i, lengths[i], out):
                continue
            (mine if a.mine or a.value is not None else others).append(i)
        return mine, others

    def _send(self, texts: Sequence[str], idx: list[int], embedder: Embedder) -> _Flight:
        """Start computing ``idx``: queued on the device when the embedder can
        (``AsyncEmbedder.submit``), else on the device thread, else here and now.
        A failure is kept in the future, so the round is in ``flight`` (and its
        claims are released) before it is raised."""
        if not idx:
            return _Flight(idx, None)
        batch = [texts[i] for i in idx]
        submit = getattr(embedder, "submit", None)
        try:
            if self.device is None:
                done: Future[Encoded] = Future()
                done.set_result(embedder.encode(batch))
            elif submit is not None:
                done = submit(batch)
            else:
                done = self.device.submit(embedder.encode, batch)
        except BaseException as e:
            done = Future()
            done.set_exception(e)
        return _Flight(idx, done)

    def _land(self, f: _Flight, keys: list[bytes], lengths: list[int], out: Resolved) -> None:
        """Take a round's vectors from the device and store them."""
        if f.done is None:
            return
        self._fill(f.idx, f.done.result(), out)
        if self.store is None:
            return
        values = encode_entries(self.own, out.embeddings[f.idx], out.truncated[f.idx], [lengths[i] for i in f.idx])
        try:
            self.store.put(self.own, [keys[i] for i in f.idx], values, self.owner)
        except BusUnavailable as e:
            self._off(e)

    def _round(
        self,
        texts: Sequence[str],
        keys: list[bytes],
        lengths: list[int],
        idx: list[int],
        embedder: Embedder,
        out: Resolved,
    ) -> list[int]:
        """Claim ``idx``, compute and store what this worker holds; return the rest."""
        mine, others = self._claim(keys, lengths, idx, out)
        f = self._send(texts, mine, embedder)
        try:
            self._land(f, keys, lengths, out)
        except BaseException:
            _settle(f)
            self._release([keys[i] for i in mine])
            raise
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

    def _compute(self, texts: Sequence[str], idx: list[int], embedder: Embedder, out: Resolved) -> None:
        if not idx:
            return
        self._fill(idx, embedder.encode([texts[i] for i in idx]), out)

    def _fill(self, idx: list[int], enc: Encoded, out: Resolved) -> None:
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
