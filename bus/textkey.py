# Twin: rust/worker/src/textkey.rs (docs/parity.md)
"""A text's identity: what makes two rows "the same text" fleet-wide.

The key is BLAKE2b with a 16-byte digest (128 bits) over
``model_id || 0x1F || text``, where ``text`` is the exact UTF-8 string the
model receives after the workers' cleaning (``workers.cleaning``: invalid
UTF-8 decoded with U+FFFD replacement, nothing else changed: no strip, no
case folding, no Unicode normalisation). Both workers and the clusterer
compute it this way; ``tests/vectors/text_keys.json`` pins it for both
languages (the Rust twin is ``rust/worker/src/textkey.rs``).

The precision class of a vector (``exact`` or ``int8``) is not part of the
key: the reuse store keeps one entry per (key, class), see ``docs/reuse.md``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

KEY_BYTES = 16
"""Digest size: 128 bits. At 10^8 distinct texts the chance of any
collision is about 10^-23; the store also checks the text's byte length."""

SEPARATOR = b"\x1f"
"""Between the model id and the text, so no (model, text) pair can alias
another."""


def text_key(model_id: str, text: str) -> bytes:
    """The 16-byte identity of ``text`` as embedded by ``model_id``."""
    h = hashlib.blake2b(digest_size=KEY_BYTES)
    h.update(model_id.encode("utf-8"))
    h.update(SEPARATOR)
    h.update(text.encode("utf-8"))
    return h.digest()


def text_keys(model_id: str, texts: Iterable[str]) -> list[bytes]:
    """``text_key`` of every text, sharing the model id's hash state."""
    return keys_and_lengths(model_id, texts)[0]


def keys_and_lengths(model_id: str, texts: Iterable[str]) -> tuple[list[bytes], list[int]]:
    """``text_key`` and UTF-8 byte length of every text (the reuse store
    checks the length against a stored one, so a collision cannot pass)."""
    base = hashlib.blake2b(digest_size=KEY_BYTES)
    base.update(model_id.encode("utf-8"))
    base.update(SEPARATOR)
    keys, lengths = [], []
    for text in texts:
        raw = text.encode("utf-8")
        h = base.copy()
        h.update(raw)
        keys.append(h.digest())
        lengths.append(len(raw))
    return keys, lengths
