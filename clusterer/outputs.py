"""Result files, each written to a hidden temporary name and renamed into
place, so a reader never sees a half-written file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

CLUSTERS_FILE = "clusters.parquet"
SUMMARY_FILE = "clusters_summary.json"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
MAP_FILE = "map.png"


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _publish(tmp: Path, path: Path) -> None:
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    tmp.replace(path)


def publish_file(tmp: Path, path: Path) -> None:
    """Make a fully written hidden temporary file ``path`` (fsynced, renamed into place)."""
    _publish(tmp, path)


def write_clusters(
    path: Path,
    keys: pl.DataFrame,
    labels: np.ndarray,
    probs: np.ndarray,
    outlier: np.ndarray,
    levels: dict[str, np.ndarray] | None = None,
    similarity: np.ndarray | None = None,
) -> None:
    """``clusters.parquet``: one row per embedded row: the row key (with
    ``text_key`` and ``multiplicity`` when given), ``cluster`` (-1
    unclustered), the topic of each tree level above it (``levels``, broadest
    first; -1 unclustered), ``probability`` and ``outlier`` (HDBSCAN placed
    the point in no dense region) and ``similarity`` (cosine to the cluster's
    centroid; NaN for noise and outliers). Rows of one text share all of them."""
    tree = {name: pl.Series(values, dtype=pl.Int32) for name, values in (levels or {}).items()}
    table = keys.with_columns(
        pl.col("input_path").cast(pl.String),
        cluster=pl.Series(labels, dtype=pl.Int32),
        **tree,
        probability=pl.Series(probs, dtype=pl.Float32),
        outlier=pl.Series(outlier, dtype=pl.Boolean),
        **({} if similarity is None else {"similarity": pl.Series(similarity, dtype=pl.Float32)}),
    )
    tmp = _tmp(path)
    table.write_parquet(tmp, compression="zstd", statistics=True)
    _publish(tmp, path)


def write_text(path: Path, text: str) -> None:
    tmp = _tmp(path)
    tmp.write_text(text, encoding="utf-8")
    _publish(tmp, path)


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    write_text(path, json.dumps(summary, indent=1, ensure_ascii=False, default=str) + "\n")
