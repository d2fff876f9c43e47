"""Stable cluster ids: a new fit keeps the ids of the previous run's clusters.

HDBSCAN numbers clusters afresh on every fit (and another seed, another
sample or 10% more data reorders them), so "cluster 7" would mean something
else after every run. When ``--out`` already holds a ``clusters.parquet``,
each new cluster is matched to a previous one by the distinct texts they
share (their ``text_key``): the Jaccard index of the two clusters' members
among the texts both runs clustered, maximised over one-to-one pairs by the
Hungarian algorithm (``scipy.optimize.linear_sum_assignment``). A pair with a
Jaccard index of at least ``MATCH_MIN_JACCARD`` keeps the previous id; every
other new cluster takes a fresh id above every id the previous run used
(largest first), so an id never comes back with another meaning. Previous
clusters left without a partner are *retired*. ``--renumber`` numbers from
the largest cluster down instead, as a first run does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from clusterer.distinct import Distinct

MATCH_MIN_JACCARD = 0.3
"""Least overlap for a new cluster to keep a previous cluster's id."""

UNKNOWN = -2
"""A text the previous run did not have."""


@dataclass
class IdMatch:
    """How the new clusters were numbered against the previous run."""

    labels: np.ndarray
    previous_clusters: int
    kept: int
    new: int
    retired: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "previous_clusters": self.previous_clusters,
            "kept": self.kept,
            "new": self.new,
            "retired": self.retired[:200],
        }


def previous_labels(path: Path, distinct: Distinct) -> np.ndarray | None:
    """Each distinct text's cluster in the run at ``path`` (-1 unclustered, ``UNKNOWN`` absent);
    None when there is no readable previous run with text keys."""
    if not path.is_file():
        return None
    try:
        prev = pl.read_parquet(path, columns=["text_key", "cluster"])
    except (OSError, pl.exceptions.PolarsError):
        return None
    prev = prev.filter(pl.col("text_key").is_not_null()).unique("text_key", keep="first")
    if prev.is_empty():
        return None
    now = pl.DataFrame({"text_key": distinct.key_hex(), "index": np.arange(distinct.texts)})
    joined = now.join(prev, on="text_key", how="inner")
    out = np.full(distinct.texts, UNKNOWN, dtype=np.int64)
    out[joined["index"].to_numpy()] = joined["cluster"].to_numpy()
    return out


def match_ids(labels: np.ndarray, previous: np.ndarray) -> IdMatch:
    """Renumber ``labels`` (new clusters, -1 noise) to keep ``previous`` ids (see the module docstring)."""
    from scipy.optimize import linear_sum_assignment

    new_ids = np.unique(labels[labels >= 0])
    old_ids = np.unique(previous[previous >= 0])
    both = (labels >= 0) & (previous >= 0)
    seen_before = previous != UNKNOWN
    new_size = np.array([np.sum((labels == c) & seen_before) for c in new_ids], dtype=np.float64)
    old_size = np.array([np.sum(previous == c) for c in old_ids], dtype=np.float64)
    inter = np.zeros((len(new_ids), len(old_ids)))
    if both.any() and len(new_ids) and len(old_ids):
        pairs, counts = np.unique(np.stack([labels[both], previous[both]]), axis=1, return_counts=True)
        inter[np.searchsorted(new_ids, pairs[0]), np.searchsorted(old_ids, pairs[1])] = counts
    jaccard = inter / np.maximum(new_size[:, None] + old_size[None, :] - inter, 1.0)
    mapping: dict[int, int] = {}
    if inter.size:
        rows, cols = linear_sum_assignment(-jaccard)
        for r, c in zip(rows, cols, strict=True):
            if jaccard[r, c] >= MATCH_MIN_JACCARD:
                mapping[int(new_ids[r])] = int(old_ids[c])
    next_id = int(old_ids.max()) + 1 if len(old_ids) else 0
    unmatched = [c for c in new_ids.tolist() if c not in mapping]
    for c in sorted(unmatched, key=lambda c: (-int(np.sum(labels == c)), c)):
        mapping[c] = next_id
        next_id += 1
    out = labels.copy()
    member = labels >= 0
    lut = np.full(int(new_ids.max()) + 1 if len(new_ids) else 0, -1, dtype=labels.dtype)
    for a, b in mapping.items():
        lut[a] = b
    out[member] = lut[labels[member]]
    kept = len(mapping) - len(unmatched)
    retired = sorted(set(old_ids.tolist()) - set(mapping.values()))
    return IdMatch(out, len(old_ids), kept, len(unmatched), retired)
