"""The identity of every embedded row: the key of its text, read from the inputs.

Outputs hold no texts, so each output's rows are joined back to the text
column of its input (``embedfleet.input_path``, absolute ``row``) and keyed
exactly as the workers key them (``bus.textkey``: BLAKE2b-128 of
``model_id || 0x1F || text``, the text as the model received it after
``workers.cleaning``). The column is streamed one batch of rows at a time and
only the 16-byte keys are kept, so memory is O(rows x 16 bytes) whatever the
length of the texts.

Where an input cannot be read (missing, unreadable, no such column, a null
where an embedded row should be), its rows are identified by their vector
instead: BLAKE2b-128 of the float32 embedding under a separate domain, so
only identical vectors merge, and the caller says so in the progress lines
and the report.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from bus.textkey import KEY_BYTES, SEPARATOR
from clusterer.catalog import EmbeddingPart
from clusterer.progress import Progress
from clusterer.reader import BATCH_ROWS

TEXT_BATCH_ROWS = 65_536
"""Input rows read per batch while keying texts."""

VECTOR_DOMAIN = b"embedfleet/vector\x1f"
"""Prefix of the keys of rows identified by their vector: no text key begins
with it unless a model id does, so the two kinds of key never alias."""


class TextsUnavailable(Exception):
    """The texts of an output's rows cannot be read from its input."""


@dataclass
class RowKeys:
    """A 16-byte identity per row (catalog order) and how each was made."""

    keys: np.ndarray
    """``(rows, 16)`` uint8."""
    by_text: np.ndarray
    """True where the key is the row's text key; False: a key of its vector."""
    unreadable: list[str] = field(default_factory=list)
    """One line per output whose input texts could not be read."""


def key_texts(model_id: str, values: Sequence[bytes], out: np.ndarray) -> None:
    """``bus.textkey.text_keys`` over raw UTF-8 values, written into ``out``.

    Hashing the bytes as they are stored skips a decode and re-encode per
    text; a value that is not valid UTF-8 is first decoded with U+FFFD
    replacement, as the workers' cleaning does."""
    base = hashlib.blake2b(digest_size=KEY_BYTES)
    base.update(model_id.encode("utf-8"))
    base.update(SEPARATOR)
    digests = bytearray()
    for value in values:
        h = base.copy()
        h.update(value)
        digests += h.digest()
    out[:] = np.frombuffer(bytes(digests), dtype=np.uint8).reshape(len(values), KEY_BYTES)


def _as_utf8_bytes(arr: pa.Array) -> list[bytes]:
    """The values of a string or binary array as valid UTF-8 bytes (nulls refused)."""
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if arr.null_count:
        raise TextsUnavailable(f"{arr.null_count} null text(s) where an embedded row should be (input changed?)")
    if pa.types.is_null(arr.type):
        return []
    raw = arr.cast(pa.large_binary())
    try:
        raw.cast(pa.large_string())  # validates UTF-8 in one pass
        valid = True
    except pa.ArrowInvalid:
        valid = False
    values: list[bytes] = raw.to_pylist()
    if valid:
        return values
    return [v.decode("utf-8", errors="replace").encode("utf-8") for v in values]


def _row_groups(meta: pq.FileMetaData, lo: int, hi: int) -> tuple[list[int], int]:
    """Row groups overlapping rows ``[lo, hi)`` and the first row they hold."""
    groups: list[int] = []
    first, row = 0, 0
    for g in range(meta.num_row_groups):
        n = meta.row_group(g).num_rows
        if row + n > lo and row < hi:
            if not groups:
                first = row
            groups.append(g)
        row += n
    return groups, first


def _batches(path: Path, column: str, groups: list[int], binary: bool) -> Iterator[pa.Array]:
    """The text column of row ``groups``, in batches; ``binary`` reads a string
    column as raw bytes (Arrow refuses a string column holding invalid UTF-8)."""
    if not binary:
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=TEXT_BATCH_ROWS, columns=[column], row_groups=groups):
            yield batch.column(0)
        return
    schema = pa.schema([pa.field(column, pa.binary())])
    frag = next(iter(ds.dataset(path, format="parquet", schema=schema).get_fragments()))
    for batch in frag.subset(row_group_ids=groups).to_batches(schema=schema, batch_size=TEXT_BATCH_ROWS):
        yield batch.column(0)


def _read_rows(part: EmbeddingPart) -> np.ndarray:
    return pq.read_table(part.path, columns=["row"]).column(0).to_numpy().astype(np.int64, copy=False)


def _key_rows(path: Path, part: EmbeddingPart, column: str, wanted: np.ndarray, binary: bool) -> np.ndarray:
    """Keys of the texts at sorted rows ``wanted`` of the input at ``path``."""
    pf = pq.ParquetFile(path)
    if column not in pf.schema_arrow.names:
        raise TextsUnavailable(f"no column {column!r}")
    meta = pf.metadata
    if wanted[0] < 0 or wanted[-1] >= meta.num_rows:
        raise TextsUnavailable(f"rows up to {wanted[-1]} but the input has {meta.num_rows}")
    groups, offset = _row_groups(meta, int(wanted[0]), int(wanted[-1]) + 1)
    keys = np.empty((len(wanted), KEY_BYTES), dtype=np.uint8)
    done = 0
    for arr in _batches(path, column, groups, binary):
        end = offset + len(arr)
        stop = int(np.searchsorted(wanted, end, side="left"))
        if stop > done:
            take = pa.array(wanted[done:stop] - offset)
            key_texts(part.model, _as_utf8_bytes(arr.take(take)), keys[done:stop])
            done = stop
        offset = end
        if done == len(wanted):
            break
    if done != len(wanted):
        raise TextsUnavailable(f"only {done} of {len(wanted)} rows found")
    return keys


def part_text_keys(input_root: Path, part: EmbeddingPart, column: str, out: np.ndarray) -> None:
    """Text keys of the part's rows into ``out``; ``TextsUnavailable`` if they cannot be read."""
    rows = _read_rows(part)
    if not len(rows):
        return
    order = np.argsort(rows, kind="stable") if np.any(np.diff(rows) < 0) else None
    wanted = rows[order] if order is not None else rows
    path = input_root / part.input_path
    try:
        try:
            keys = _key_rows(path, part, column, wanted, binary=False)
        except pa.ArrowInvalid as e:
            if "utf" not in str(e).lower():
                raise
            keys = _key_rows(path, part, column, wanted, binary=True)
    except (OSError, pa.ArrowException, ValueError) as e:
        first_line = str(e).splitlines()[0] if str(e) else ""
        raise TextsUnavailable(f"{type(e).__name__}: {first_line}") from None
    if order is None:
        out[:] = keys
    else:
        out[order] = keys


def part_vector_keys(part: EmbeddingPart, out: np.ndarray) -> None:
    """Keys of the part's embedding vectors (float32 bytes) into ``out``."""
    pf = pq.ParquetFile(part.path)
    at = 0
    for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=["embedding"]):
        col = batch.column(0)
        arr = np.ascontiguousarray(col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False))
        width = part.dim * 4
        buf = arr.data.cast("B")
        digests = bytearray()
        for i in range(len(col)):
            h = hashlib.blake2b(VECTOR_DOMAIN, digest_size=KEY_BYTES)
            h.update(buf[i * width : (i + 1) * width])
            digests += h.digest()
        out[at : at + len(col)] = np.frombuffer(bytes(digests), dtype=np.uint8).reshape(len(col), KEY_BYTES)
        at += len(col)


def row_keys(input_root: Path, parts: list[EmbeddingPart], column: str, progress: Progress) -> RowKeys:
    """The identity of every row of ``parts`` (catalog order)."""
    total = sum(p.rows for p in parts)
    keys = np.empty((total, KEY_BYTES), dtype=np.uint8)
    by_text = np.ones(total, dtype=bool)
    unreadable: list[str] = []
    offset = 0
    for part in parts:
        out = keys[offset : offset + part.rows]
        try:
            part_text_keys(input_root, part, column, out)
        except TextsUnavailable as e:
            unreadable.append(f"{part.input_path}: {e}")
            by_text[offset : offset + part.rows] = False
            part_vector_keys(part, out)
        offset += part.rows
        progress.count("rows keyed", offset, total)
    progress.count("rows keyed", offset, total, force=True)
    return RowKeys(keys, by_text, unreadable)
