# Twin: rust/worker/src/input.rs, rust/worker/src/input_raw.rs (docs/parity.md)
"""Read one job's row range of the text (and id) column with polars, in
chunks, after checking the file is a readable parquet with the expected
columns. Every bad-input case raises ``BadInput`` naming the file."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from bus.errors import BadInput, TransientError
from workers.paths import never_opens

TEXT_TYPES = "a string or binary column"


@dataclass(frozen=True)
class Chunk:
    """Consecutive rows of the part: ``values`` start at absolute row ``start``."""

    start: int
    values: list[str | bytes | None]
    ids: pa.Array | None


@dataclass(frozen=True)
class InputPart:
    """A validated input file and the row range a job covers."""

    rel: str
    path: Path
    column: str
    id_column: str | None
    id_type: pa.DataType | None
    start: int
    end: int
    text_bytes_per_row: int
    """Uncompressed bytes per row of the text column (for memory planning)."""

    @property
    def rows(self) -> int:
        return self.end - self.start


def _io_error(rel: str, e: OSError) -> Exception:
    if e.errno in (errno.ENOENT, errno.EISDIR, errno.EACCES, errno.EPERM) or never_opens(e):
        return BadInput(rel, f"cannot open input ({e.strerror or e})")
    return TransientError(f"{rel}: I/O error while reading ({e.strerror or e})")


def _text_type_ok(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return bool(
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_string_view(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_binary_view(t)
        or pa.types.is_null(t)
    )


def _text_bytes_per_row(meta: pq.FileMetaData, column: str) -> int:
    total, rows = 0, 0
    for g in range(meta.num_row_groups):
        rg = meta.row_group(g)
        rows += rg.num_rows
        for c in range(rg.num_columns):
            col = rg.column(c)
            if col.path_in_schema == column:
                total += col.total_uncompressed_size
    return total // rows if rows else 0


def open_part(rel: str, path: Path, column: str, id_column: str | None, rows: tuple[int, int] | None) -> InputPart:
    """Check the file and the job's columns and range; ``BadInput`` if anything is wrong."""
    try:
        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow
        meta = pf.metadata
    except OSError as e:
        if isinstance(e, pa.ArrowException) or e.errno is None:
            raise BadInput(rel, f"not a readable parquet file ({str(e).splitlines()[0]})") from None
        raise _io_error(rel, e) from None
    except (pa.ArrowException, ValueError) as e:
        raise BadInput(rel, f"not a readable parquet file ({str(e).splitlines()[0]})") from None
    for name in (column, id_column):
        if name is not None and schema.get_field_index(name) < 0:
            raise BadInput(rel, f"missing column {name!r} (columns: {', '.join(schema.names)})")
    text_type = schema.field(column).type
    if not _text_type_ok(text_type):
        raise BadInput(rel, f"column {column!r} has type {text_type}, expected {TEXT_TYPES}")
    n = meta.num_rows
    start, end = rows if rows is not None else (0, n)
    if end > n:
        raise BadInput(rel, f"row range [{start}, {end}) is beyond the file's {n} rows")
    id_type = schema.field(id_column).type if id_column is not None else None
    return InputPart(rel, path, column, id_column, id_type, start, end, _text_bytes_per_row(meta, column))


def _values(series: pl.Series) -> list[str | bytes | None]:
    if series.dtype == pl.Categorical or series.dtype == pl.Enum:
        series = series.cast(pl.String)
    return series.to_list()


def _ids(part: InputPart, series: pl.Series) -> pa.Array:
    arr = series.to_arrow()
    if part.id_type is not None and arr.type != part.id_type:
        try:
            arr = arr.cast(part.id_type)
        except (pa.ArrowException, NotImplementedError):
            pass  # keep polars' equivalent type rather than fail the job
    return arr


def _read_as_binary(part: InputPart, first: int, length: int) -> pl.DataFrame:
    """The rows with the text column read as raw bytes, for a string column
    holding invalid UTF-8 (which polars refuses): only the row groups that
    overlap the rows are read."""
    meta = pq.ParquetFile(part.path).metadata
    fields = [pa.field(part.column, pa.binary())]
    if part.id_column and part.id_type is not None:
        fields.append(pa.field(part.id_column, part.id_type))
    schema = pa.schema(fields)
    groups: list[int] = []
    row, skip = 0, 0
    for g in range(meta.num_row_groups):
        n = meta.row_group(g).num_rows
        if row + n > first and row < first + length:
            if not groups:
                skip = first - row
            groups.append(g)
        row += n
    frag = next(iter(ds.dataset(part.path, format="parquet", schema=schema).get_fragments()))
    table = frag.subset(row_group_ids=groups).to_table(schema=schema, columns=schema.names)
    return pl.from_arrow(table.slice(skip, length))  # type: ignore[return-value]


def _read(part: InputPart, first: int, length: int) -> pl.DataFrame:
    cols = [part.column] + ([part.id_column] if part.id_column else [])
    try:
        return pl.scan_parquet(part.path).select(cols).slice(first, length).collect()
    except pl.exceptions.PolarsError as e:
        if "invalid utf-8" not in str(e).lower():
            raise
    return _read_as_binary(part, first, length)


def read_chunk(part: InputPart, offset: int, length: int) -> Chunk:
    """Rows ``[start + offset, start + offset + length)`` of the part's columns."""
    try:
        df = _read(part, part.start + offset, length)
    except OSError as e:
        if isinstance(e, pa.ArrowException) and e.errno is None:
            raise BadInput(part.rel, f"corrupt parquet data ({str(e).splitlines()[0]})") from None
        raise _io_error(part.rel, e) from None
    except (pl.exceptions.PolarsError, pa.ArrowException, ValueError) as e:
        raise BadInput(part.rel, f"corrupt parquet data ({str(e).splitlines()[0]})") from None
    ids = _ids(part, df[part.id_column]) if part.id_column else None
    return Chunk(part.start + offset, _values(df[part.column]), ids)


def chunks(part: InputPart, chunk_rows: int) -> Iterator[Chunk]:
    """The part in chunks of at most ``chunk_rows`` rows; one empty chunk for an empty part."""
    if part.rows == 0:
        yield Chunk(part.start, [], None if part.id_column is None else pa.array([], part.id_type))
        return
    for offset in range(0, part.rows, chunk_rows):
        yield read_chunk(part, offset, min(chunk_rows, part.rows - offset))
