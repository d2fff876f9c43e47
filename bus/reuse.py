# Twin: rust/worker/src/reuse/entry.rs (docs/parity.md)
"""The reuse store: vectors computed once, reused by every worker of the fleet.

An entry is the vector of one distinct text (``bus.textkey``) in one
precision class, stored under ``<ns>:r:<class>:<key hex>``. Its value, all
little-endian, 776 bytes:

====== ======= ==========================================================
offset size    content
====== ======= ==========================================================
0      1       format (``REUSE_ENTRY_FORMAT`` = 1)
1      1       class: 0 exact, 1 int8
2      1       flags: bit 0 = the text was truncated at 256 tokens
3      1       0
4      4       byte length of the text's UTF-8 (u32, saturating)
8      768     the 384 components as IEEE 754 binary16
====== ======= ==========================================================

binary16 keeps cosine ≥ 0.99999 to the float32 vector (about 1 - 1e-7);
readers renormalise. An entry whose size, format, class, text length or
values do not check out is ignored, so the text is recomputed: the store can
only save work. ``docs/reuse.md`` has the protocol; the Rust twin is
``rust/worker/src/reuse.rs``; ``tests/vectors/reuse_entries.json`` pins the
encoding for both.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from bus import constants as c

CLASS_CODES = {c.REUSE_CLASS_EXACT: 0, c.REUSE_CLASS_INT8: 1}
HEADER = struct.Struct("<BBBBI")
ENTRY_BYTES = HEADER.size + 2 * c.EMBEDDING_DIM
NORM_TOLERANCE = 0.01
"""A decoded vector's norm must be within this of 1 (before renormalising)."""


def precision_class(precision: str) -> str:
    """Class of a worker's precision: int8 is its own, the rest are exact."""
    return c.REUSE_CLASS_INT8 if precision == "int8" else c.REUSE_CLASS_EXACT


def acceptable_classes(own: str) -> list[str]:
    """Classes a worker of class ``own`` may reuse, most exact first."""
    return [c.REUSE_CLASS_EXACT] if own == c.REUSE_CLASS_EXACT else [c.REUSE_CLASS_EXACT, own]


def encode_entry(cls: str, vector: np.ndarray, truncated: bool, text_bytes: int) -> bytes:
    """The stored value of one vector."""
    head = HEADER.pack(c.REUSE_ENTRY_FORMAT, CLASS_CODES[cls], 1 if truncated else 0, 0, min(text_bytes, 0xFFFFFFFF))
    return head + np.asarray(vector, dtype="<f4").astype("<f2").tobytes()


def encode_entries(cls: str, vectors: np.ndarray, truncated: np.ndarray, text_bytes: Sequence[int]) -> list[bytes]:
    """``encode_entry`` of many vectors at once (one array pass, then a slice per entry)."""
    n = len(vectors)
    if n == 0:
        return []
    block = np.zeros((n, ENTRY_BYTES), dtype=np.uint8)
    block[:, 0] = c.REUSE_ENTRY_FORMAT
    block[:, 1] = CLASS_CODES[cls]
    block[:, 2] = np.asarray(truncated, dtype=bool)
    lengths = np.minimum(np.asarray(text_bytes, dtype=np.int64), 0xFFFFFFFF).astype("<u4")
    block[:, 4:8] = lengths.view(np.uint8).reshape(n, 4)
    block[:, HEADER.size :] = np.asarray(vectors, dtype="<f4").astype("<f2").view(np.uint8).reshape(n, -1)
    raw = block.tobytes()
    return [raw[i : i + ENTRY_BYTES] for i in range(0, n * ENTRY_BYTES, ENTRY_BYTES)]


@dataclass(frozen=True)
class Entry:
    """A decoded entry: unit vector, truncation flag and class."""

    vector: np.ndarray
    truncated: bool
    cls: str


CLASS_OF_CODE = {code: cls for cls, code in CLASS_CODES.items()}


def decode_entry(value: bytes, classes: Sequence[str], text_bytes: int) -> Entry | None:
    """The entry, or ``None`` when it is not a valid vector of one of
    ``classes`` for a text of ``text_bytes`` UTF-8 bytes (corrupt, cut short,
    another format, or a hash collision with a text of another length)."""
    if len(value) != ENTRY_BYTES:
        return None
    fmt, code, flags, _, length = HEADER.unpack_from(value)
    cls = CLASS_OF_CODE.get(code)
    if fmt != c.REUSE_ENTRY_FORMAT or cls is None or cls not in classes or length != min(text_bytes, 0xFFFFFFFF):
        return None
    vec = np.frombuffer(value, dtype="<f2", offset=HEADER.size).astype(np.float32)
    norm = float(np.sqrt(np.dot(vec, vec)))
    if not np.isfinite(norm) or abs(norm - 1.0) > NORM_TOLERANCE:
        return None
    return Entry(vec / norm, bool(flags & 1), cls)


@dataclass(frozen=True)
class Claimed:
    """What ``ReuseStore.claim`` found for one text: an entry value to decode
    (``value``), the caller's own claim (``mine``) or another worker's claim
    (neither: ask again later)."""

    value: bytes | None = None
    mine: bool = False


class ReuseStore(Protocol):
    """What a worker needs from the reuse store. Every method may raise
    ``bus.errors.BusUnavailable``; callers then carry on without the store."""

    def lookup(self, keys: Sequence[bytes], classes: Sequence[str]) -> list[bytes | None]:
        """Per key, the value of the first class in ``classes`` that has one."""

    def claim(self, keys: Sequence[bytes], classes: Sequence[str], owner: str) -> list[Claimed]:
        """Per key: a value, or the caller's claim on ``classes[-1]`` (its own
        class), or ``Claimed()`` while another worker computes it."""

    def put(self, cls: str, keys: Sequence[bytes], values: Sequence[bytes], owner: str) -> int:
        """Store values within the ceiling and drop the owner's claims; an
        empty value only drops the claim. Returns the entries written."""


@dataclass
class MemoryReuseStore:
    """In-memory ``ReuseStore`` for unit tests of worker logic (no expiry:
    tests that need a claim to lapse call ``expire_claims``)."""

    max_bytes: int = c.DEFAULT_REUSE_MAX_BYTES
    entries: dict[tuple[str, bytes], bytes] = field(default_factory=dict)
    claims: dict[tuple[str, bytes], str] = field(default_factory=dict)
    used: int = 0

    def lookup(self, keys: Sequence[bytes], classes: Sequence[str]) -> list[bytes | None]:
        return [next((self.entries[(k2, key)] for k2 in classes if (k2, key) in self.entries), None) for key in keys]

    def claim(self, keys: Sequence[bytes], classes: Sequence[str], owner: str) -> list[Claimed]:
        out = []
        for key, value in zip(keys, self.lookup(keys, classes), strict=True):
            if value is not None:
                out.append(Claimed(value=value))
            elif any((cls, key) in self.claims for cls in classes[:-1]):
                out.append(Claimed())
            else:
                holder = self.claims.setdefault((classes[-1], key), owner)
                out.append(Claimed(mine=holder == owner))
        return out

    def put(self, cls: str, keys: Sequence[bytes], values: Sequence[bytes], owner: str) -> int:
        written = 0
        for key, value in zip(keys, values, strict=True):
            if value:
                cost = len(key) * 2 + len(value) + c.REUSE_ENTRY_OVERHEAD
                if (cls, key) in self.entries or self.max_bytes <= 0 or self.used + cost <= self.max_bytes:
                    self.used += 0 if (cls, key) in self.entries else cost
                    self.entries[(cls, key)] = value
                    written += 1
            if self.claims.get((cls, key)) == owner:
                del self.claims[(cls, key)]
        return written

    def expire_claims(self) -> None:
        self.claims.clear()
