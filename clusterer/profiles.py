"""What the report says about each cluster: rows and distinct texts,
keywords, representatives.

Everything here is computed over distinct texts (each counted once, however
many rows repeat it), so a reply posted a thousand times neither drags a
centroid nor crowds the keywords; multiplicities only count rows. Centroids
are exact means of the original (normalised) embeddings of the distinct
texts, built in one streaming pass; a second pass scores every text by its
cosine to its centroid. Keywords come from a bounded random sample of each
cluster's distinct texts (``KEYWORD_DOCS``), so the report costs the same at
a million texts as at a hundred thousand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp

from clusterer.ann import IndexBuilder
from clusterer.catalog import EmbeddingPart
from clusterer.keywords import Keywords, describe
from clusterer.progress import Progress
from clusterer.reader import stream

KEYWORD_DOCS = 1_000
"""Distinct texts per cluster fed to c-TF-IDF (a random sample of larger clusters)."""

CANDIDATES_PER_REPRESENTATIVE = 4
"""Nearest-to-centroid candidates fetched per representative wanted, so that
near-duplicates (the same words in another case or spacing) can be skipped."""


@dataclass
class ClusterProfile:
    cluster: int
    rows: int
    texts: int
    mean_probability: float
    """Mean HDBSCAN membership strength over the cluster's distinct texts."""
    keywords: list[tuple[str, float]]
    keywords_from: str
    """``words`` (c-TF-IDF), ``texts`` (its most frequent texts) or ``none`` (texts unreadable)."""
    representatives: list[dict[str, object]]


def centroid_similarity(
    parts: list[EmbeddingPart],
    labels: np.ndarray,
    rows: np.ndarray,
    progress: Progress,
    index: IndexBuilder | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine of every point to its cluster's centroid (NaN where the label is -1), and the
    unit centroids ``(max(k, 1), dim)``. With ``index``, the same two passes train it and add every
    point to it (``clusterer.ann``).

    Point ``i`` is the embedding at sorted global row ``rows[i]`` (one per
    distinct text). Callers pass -1 for outliers too, so centroids are those
    of the core members."""
    k = int(labels.max()) + 1 if len(labels) else 0
    dim = parts[0].dim if parts else 0
    sums = np.zeros((max(k, 1), dim), dtype=np.float64)

    def add(offset: int, arr: np.ndarray) -> None:
        lab = labels[offset : offset + len(arr)]
        keep = np.flatnonzero(lab >= 0)
        onehot = sp.csr_matrix((np.ones(len(keep)), (lab[keep], keep)), shape=(len(sums), len(arr)))
        sums[:] += onehot @ arr.astype(np.float64)
        if index is not None:
            index.offer(offset, arr)

    stream(parts, add, progress, "centroids", select=rows)
    if index is not None:
        index.train()
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    centres = (sums / np.where(norms == 0, 1.0, norms)).astype(np.float32)
    sims = np.full(len(labels), np.nan, dtype=np.float32)

    def score(offset: int, arr: np.ndarray) -> None:
        lab = labels[offset : offset + len(arr)]
        keep = lab >= 0
        sims[offset : offset + len(arr)][keep] = (arr[keep] * centres[lab[keep]]).sum(1)
        if index is not None:
            index.add(offset, arr)

    stream(parts, score, progress, "similarity to centroids", select=rows)
    return sims, centres


def representative_candidates(labels: np.ndarray, sims: np.ndarray, per_cluster: int) -> np.ndarray:
    """Indices of the ``per_cluster`` points nearest each centroid."""
    member = np.flatnonzero(labels >= 0)
    order = member[np.lexsort((-sims[member], labels[member]))]
    lab = labels[order]
    starts = np.searchsorted(lab, lab, side="left")
    rank = np.arange(len(order)) - starts
    return order[rank < per_cluster]


def keyword_sample(labels: np.ndarray, per_cluster: int, seed: int) -> np.ndarray:
    """Indices of at most ``per_cluster`` random members of each cluster and of the noise."""
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(labels))
    order = shuffled[np.argsort(labels[shuffled], kind="stable")]
    lab = labels[order]
    starts = np.searchsorted(lab, lab, side="left")
    return np.sort(order[(np.arange(len(order)) - starts) < per_cluster])


def build_profiles(
    labels: np.ndarray,
    probs: np.ndarray,
    multiplicity: np.ndarray,
    sims: np.ndarray,
    texts: pl.DataFrame,
    top_words: int,
    representatives: int,
) -> tuple[list[ClusterProfile], list[tuple[str, float]], dict[int, list[tuple[str, int]]]]:
    """Profiles of every cluster (by id), the keywords of the noise, and the keyword texts
    of every class (``class_documents``).

    ``labels``, ``probs``, ``multiplicity`` and ``sims`` are per distinct
    text; ``texts`` has ``index`` (distinct text), ``input_path``, ``row``,
    ``id`` (optional) and ``text`` for the keyword sample and the candidates."""
    at = texts["index"].to_numpy()
    texts = texts.with_columns(
        cluster=pl.Series(labels[at]),
        similarity=pl.Series(sims[at]),
        rows=pl.Series(multiplicity[at], dtype=pl.Int64),
    )
    member = labels >= 0
    k = int(labels[member].max()) + 1 if member.any() else 0
    ids = np.unique(labels[member]).tolist()  # ids kept from an earlier run may leave gaps
    docs = class_documents(texts, "cluster")
    keywords = describe(docs, [*([-1] if -1 in docs else []), *ids], top_words)
    text_counts = np.bincount(labels[member], minlength=k)
    row_counts = np.bincount(labels[member], weights=multiplicity[member], minlength=k)
    prob_sums = np.bincount(labels[member], weights=probs[member], minlength=k)
    profiles = []
    for c in ids:
        members = texts.filter((pl.col("cluster") == c) & pl.col("similarity").is_not_nan())
        profiles.append(
            ClusterProfile(
                cluster=c,
                rows=int(row_counts[c]),
                texts=int(text_counts[c]),
                mean_probability=round(float(prob_sums[c] / max(text_counts[c], 1)), 4),
                keywords=keywords[c].words,
                keywords_from=keywords[c].source,
                representatives=_distinct(members.sort("similarity", descending=True), representatives),
            )
        )
    return profiles, keywords.get(-1, Keywords([], "none")).words, docs


def class_documents(texts: pl.DataFrame, by: str) -> dict[int, list[tuple[str, int]]]:
    """Each class's distinct texts with the rows they stand for (``texts`` has ``text``, ``rows``)."""
    docs: dict[int, list[tuple[str, int]]] = {}
    known = texts.filter(pl.col("text").is_not_null()).unique("text", maintain_order=True)
    for (c,), g in known.partition_by(by, as_dict=True).items():
        docs[int(c)] = list(zip(g["text"].to_list(), g["rows"].to_list(), strict=True))
    return docs


def _distinct(members: pl.DataFrame, n: int) -> list[dict[str, object]]:
    """The first ``n`` members whose texts differ beyond case and spacing."""
    seen: set[str] = set()
    out: list[dict[str, object]] = []
    for rec in members.iter_rows(named=True):
        text = rec["text"]
        key = " ".join((text or "").split()).lower()
        if text is not None and key in seen:
            continue
        seen.add(key)
        item = {"input_path": rec["input_path"], "row": rec["row"], "text": text}
        if "id" in rec:
            item["id"] = rec["id"]
        item["rows"] = int(rec["rows"])
        item["similarity"] = round(float(rec["similarity"]), 4)
        out.append(item)
        if len(out) == n:
            break
    return out
