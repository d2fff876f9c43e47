# Twin: rust/worker/src/clean.rs (docs/parity.md)
"""Row cleaning: what happens to each text before it is embedded.

- null: skipped (no output row), counted ``rows_null``;
- empty or whitespace only: embedded as is, counted ``rows_empty``;
- invalid UTF-8 (a binary text column): decoded with U+FFFD replacement,
  counted ``rows_invalid_utf8``;
- longer than the model's 256 tokens: truncated exactly as
  sentence-transformers does, counted ``rows_truncated`` (by the embedder);
- identical texts within a job: embedded once, counted ``rows_deduplicated``
  (by ``dedup``);
- texts the fleet already embedded: taken from the reuse store, counted
  ``rows_reused``; ``model_calls`` counts the texts sent to the model, and
  ``rows_exact``/``rows_int8`` the rows by the precision class of their
  vector (``docs/reuse.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Counts:
    """Per-job row counts; they go into the output metadata and the events."""

    rows_total: int = 0
    rows_embedded: int = 0
    rows_null: int = 0
    rows_empty: int = 0
    rows_invalid_utf8: int = 0
    rows_truncated: int = 0
    rows_deduplicated: int = 0
    model_calls: int = 0
    rows_reused: int = 0
    rows_exact: int = 0
    rows_int8: int = 0

    def add(self, other: Counts) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class CleanTexts:
    """The texts of one chunk that will be embedded, and where they came from."""

    positions: np.ndarray
    """Index (within the chunk) of each kept row; null rows are left out."""
    texts: list[str]
    counts: Counts


def decode(raw: bytes) -> tuple[str, bool]:
    """UTF-8 text of ``raw`` and whether it needed replacement characters."""
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace"), True


def clean(values: Sequence[str | bytes | None]) -> CleanTexts:
    """Apply the cleaning rules to one chunk of a text column."""
    counts = Counts(rows_total=len(values))
    positions: list[int] = []
    texts: list[str] = []
    for i, value in enumerate(values):
        if value is None:
            counts.rows_null += 1
            continue
        if isinstance(value, bytes):
            value, replaced = decode(value)
            counts.rows_invalid_utf8 += replaced
        if not value.strip():
            counts.rows_empty += 1
        positions.append(i)
        texts.append(value)
    counts.rows_embedded = len(texts)
    return CleanTexts(np.asarray(positions, dtype=np.int64), texts, counts)
