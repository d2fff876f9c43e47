"""The distinct texts of a run: the unit the clusterer fits on.

Chains repeat every message in every chain below it, across files and
suffixes, and short replies recur everywhere; fitted on rows, HDBSCAN finds a
text repeated a thousand times to be a dense cluster by itself. So rows are
grouped by their identity key (``clusterer.textkeys``), the clustering runs
on one point per distinct text, and every row then takes the label of its
text.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from clusterer.textkeys import RowKeys


@dataclass
class Distinct:
    """Which rows hold the same text, and the row that stands for each text."""

    first_row: np.ndarray
    """``(texts,)`` int64, ascending: the first row (catalog order) holding each
    text. Its embedding represents the text: a text's vector is a function of
    the text (the same model on the same string; the fleet even reuses one
    vector for all its rows), so any occurrence would do, the first is
    deterministic, and because these rows ascend they are read in the same
    single streaming pass as everything else."""
    of_row: np.ndarray
    """``(rows,)`` int64: the distinct text of each row."""
    multiplicity: np.ndarray
    """``(texts,)`` int64: rows holding each text."""
    keys: np.ndarray
    """``(texts, 16)`` uint8: the identity key of each text."""
    by_text: np.ndarray
    """``(texts,)`` bool: the key is the text key (False: identical vectors,
    used where the inputs could not be read)."""
    unreadable: list[str]

    @property
    def texts(self) -> int:
        return len(self.first_row)

    @property
    def rows(self) -> int:
        return len(self.of_row)

    def per_row(self, values: np.ndarray) -> np.ndarray:
        """A per-text array spread to every row."""
        return values[self.of_row]

    def key_hex(self) -> pl.Series:
        """Each distinct text's key as 32 lowercase hex digits (as the reuse store
        names it); null for texts identified by their vector."""
        width = self.keys.shape[1]
        per_text = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(width), self.texts, [None, pa.py_buffer(np.ascontiguousarray(self.keys).tobytes())]
        )
        hexed = pl.Series("text_key", per_text.cast(pa.binary())).bin.encode("hex")
        return pl.select(pl.when(pl.Series(self.by_text)).then(hexed)).to_series().alias("text_key")

    def text_key_hex(self) -> pl.Series:
        """Each row's text key (``key_hex`` spread to the rows)."""
        return self.key_hex().gather(self.of_row).alias("text_key")


def deduplicate(row_keys: RowKeys) -> Distinct:
    """Group rows by key; distinct texts are numbered in order of first row."""
    keys = np.ascontiguousarray(row_keys.keys)
    n = len(keys)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Distinct(empty, empty, empty, keys, np.zeros(0, dtype=bool), row_keys.unreadable)
    words = keys.view("<u8").reshape(n, 2)
    order = np.lexsort((words[:, 1], words[:, 0]))  # stable: a group's first row is its smallest
    ordered = words[order]
    new = np.ones(n, dtype=bool)
    new[1:] = np.any(ordered[1:] != ordered[:-1], axis=1)
    starts = np.flatnonzero(new)
    group_first = order[starts]
    rank = np.argsort(group_first, kind="stable")
    number = np.empty(len(starts), dtype=np.int64)
    number[rank] = np.arange(len(starts), dtype=np.int64)
    of_row = np.empty(n, dtype=np.int64)
    of_row[order] = number[np.cumsum(new) - 1]
    first_row = group_first[rank]
    multiplicity = np.bincount(of_row, minlength=len(starts)).astype(np.int64)
    return Distinct(
        first_row=first_row.astype(np.int64),
        of_row=of_row,
        multiplicity=multiplicity,
        keys=keys[first_row],
        by_text=row_keys.by_text[first_row],
        unreadable=row_keys.unreadable,
    )
