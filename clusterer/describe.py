"""What the reports say about the clusters, computed once: centroids, the texts
read back from the inputs (keyword samples, representative candidates and the
map's points), profiles and keywords."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from clusterer.ann import IndexBuilder
from clusterer.catalog import EmbeddingPart
from clusterer.config import ClusterConfig
from clusterer.distinct import Distinct
from clusterer.profiles import (
    CANDIDATES_PER_REPRESENTATIVE,
    KEYWORD_DOCS,
    ClusterProfile,
    build_profiles,
    centroid_similarity,
    keyword_sample,
    representative_candidates,
)
from clusterer.progress import Progress
from clusterer.texts import fetch_texts


@dataclass
class Outcome:
    """The clustering of every distinct text, as the reports need it."""

    labels: np.ndarray
    probabilities: np.ndarray
    outlier: np.ndarray
    similarity: np.ndarray | None = None
    """Cosine to the cluster's centroid (NaN for noise and outliers); None: computed from the embeddings."""
    centres: np.ndarray | None = None
    """Unit centroids by cluster id, with ``similarity``."""


@dataclass
class Described:
    profiles: list[ClusterProfile]
    """Every cluster, by id (ids kept from an earlier run may leave gaps)."""
    noise_words: list[tuple[str, float]]
    docs: dict[int, list[tuple[str, int]]]
    """Each class's keyword texts with the rows they stand for."""
    centres: np.ndarray
    """``(max id + 1, dim)`` unit centroids of the clusters' core members, indexed by id."""
    similarity: np.ndarray
    """Per distinct text: cosine to its cluster's centroid (NaN for noise and outliers)."""
    texts: dict[int, str]
    """Distinct text index -> text, for every text read back (the map's points included)."""
    index: Any = None
    """The neighbour index of every distinct text (faiss, ids = distinct text index), when built."""


def texts_needed(
    keys: pl.DataFrame, distinct: Distinct, labels: np.ndarray, sims: np.ndarray, cfg: ClusterConfig, extra: np.ndarray
) -> pl.DataFrame:
    """Row keys (with their distinct text's ``index``) of the keyword sample, the candidates and ``extra``."""
    wanted = np.union1d(
        np.union1d(
            keyword_sample(labels, KEYWORD_DOCS, cfg.seed),
            representative_candidates(labels, sims, cfg.representatives * CANDIDATES_PER_REPRESENTATIVE),
        ),
        extra,
    )
    return keys[distinct.first_row[wanted]].with_columns(index=pl.Series(wanted))


def describe_clusters(
    cfg: ClusterConfig,
    parts: list[EmbeddingPart],
    keys: pl.DataFrame,
    distinct: Distinct,
    outcome: Outcome,
    map_index: np.ndarray,
    progress: Progress,
) -> Described:
    """Centroids (unless ``outcome`` brings them), the texts the reports need, profiles and keywords."""
    index = None
    if outcome.similarity is None or outcome.centres is None:
        with progress.step("centroids, representatives" + (" and the neighbour index" if cfg.index else "")):
            core = np.where(outcome.outlier, -1, outcome.labels)
            dim = parts[0].dim if parts else 0
            index = IndexBuilder(distinct.texts, dim, cfg.seed) if cfg.index and distinct.texts else None
            sims, centres = centroid_similarity(parts, core, distinct.first_row, progress, index)
    else:
        sims, centres = outcome.similarity, outcome.centres
    with progress.step("joining texts"):
        wanted = texts_needed(keys, distinct, outcome.labels, sims, cfg, map_index)
        texts = fetch_texts(cfg.input_root, wanted, cfg.text_column, progress)
    with progress.step("keywords (c-TF-IDF)"):
        profiles, noise_words, docs = build_profiles(
            outcome.labels,
            outcome.probabilities,
            distinct.multiplicity,
            sims,
            texts,
            cfg.top_words,
            cfg.representatives,
        )
    known = texts.filter(pl.col("text").is_not_null())
    by_index = dict(zip(known["index"].to_list(), known["text"].to_list(), strict=True))
    k = max((p.cluster for p in profiles), default=-1) + 1
    full = np.zeros((k, centres.shape[1]), dtype=np.float32)  # a cluster of outliers only has no core centroid
    full[: min(k, len(centres))] = centres[:k]
    return Described(profiles, noise_words, docs, full, sims, by_index, index.index if index else None)
