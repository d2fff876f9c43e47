"""Join rows back to their texts in the input files.

Only the rows a report needs are fetched (keyword samples and
representatives), file by file, through polars' lazy scan of the text
column. A missing input file or column leaves those texts empty and is
reported once; the clustering itself does not need the texts.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from clusterer.progress import Progress


def fetch_texts(input_root: Path, wanted: pl.DataFrame, text_column: str, progress: Progress) -> pl.DataFrame:
    """``wanted`` (``input_path``, ``row``) with a ``text`` column added."""
    frames = []
    groups = (
        wanted.select(pl.col("input_path").cast(pl.String), "row").unique().partition_by("input_path", as_dict=True)
    )
    for i, ((path,), rows) in enumerate(sorted(groups.items())):
        frames.append(_read_rows(input_root, str(path), rows["row"], text_column, progress))
        progress.count("files read for texts", i + 1, len(groups))
    schema = {"input_path": pl.String, "row": pl.Int64, "text": pl.String}
    found = pl.concat(frames) if frames else pl.DataFrame(schema=schema)
    return wanted.with_columns(pl.col("input_path").cast(pl.String)).join(found, on=["input_path", "row"], how="left")


def _read_rows(input_root: Path, rel: str, rows: pl.Series, column: str, progress: Progress) -> pl.DataFrame:
    schema = {"input_path": pl.String, "row": pl.Int64, "text": pl.String}
    try:
        texts = (
            pl.scan_parquet(input_root / rel)
            .select(pl.col(column).cast(pl.String).alias("text"))
            .with_row_index("row")
            .filter(pl.col("row").is_in(rows.cast(pl.UInt32).implode()))
            .collect()
        )
    except (OSError, pl.exceptions.PolarsError) as e:
        progress.say(f"warning: texts of {rel} unavailable ({type(e).__name__}: {str(e).splitlines()[0]})")
        return pl.DataFrame(schema=schema)
    return texts.select(pl.lit(rel).alias("input_path"), pl.col("row").cast(pl.Int64), "text")
