"""The topic tree: clusters merged into broader topics, two levels above them.

HDBSCAN on a density landscape splits one subject into several sibling
clusters (a sub-forum's questions, its news, its jokes); readers want the
subject first. The clusters' exact centroids (cosine, in the model's 384
dimensions) are merged by average linkage, and the one dendrogram is cut
twice: ``level2`` has about ``sqrt(k)`` topics of ``k`` clusters and
``level1`` about ``sqrt`` of that (at least two once there are three
topics; a run of four clusters or fewer has one root). Cuts of one dendrogram nest, so every cluster has one ``level2``
topic and every ``level2`` topic one ``level1`` parent. Topics are numbered
per level from the most distinct texts down; unclustered texts are -1 at
every level. Each topic is named like a cluster, by c-TF-IDF over its
clusters' keyword samples against the other topics of its level.

Why centroids rather than HDBSCAN's condensed tree: the tree is the same on
the CPU and the GPU backend, it is built from the clusters the run keeps
(after outliers are assigned and ids are matched to an earlier run), and
it costs O(k^2) for k clusters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clusterer.keywords import describe

LEVELS = ("level1", "level2")
"""Column names of the topic levels in ``clusters.parquet``, broadest first."""


@dataclass
class TopicNode:
    level: int
    """1 (broadest) or 2."""
    id: int
    parent: int | None
    clusters: list[int]
    rows: int
    texts: int
    keywords: list[tuple[str, float]] = field(default_factory=list)
    keywords_from: str = "words"
    children: list[int] = field(default_factory=list)
    """Ids of the next level down (level-2 topics, or clusters for level 2)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "id": self.id,
            "parent": self.parent,
            "rows": self.rows,
            "texts": self.texts,
            "keywords": self.keywords,
            "keywords_from": self.keywords_from,
            "children": self.children,
            "clusters": self.clusters,
        }


@dataclass
class TopicTree:
    of_cluster: dict[str, np.ndarray]
    """Per level name: the topic id of each cluster (index = cluster id; -1 for an id not in use)."""
    nodes: list[TopicNode]

    def per_label(self, level: str, labels: np.ndarray) -> np.ndarray:
        """The topic of each label at ``level`` (-1 stays -1)."""
        mapping = self.of_cluster[level]
        out = np.full(len(labels), -1, dtype=np.int32)
        member = labels >= 0
        out[member] = mapping[labels[member]]
        return out

    def level(self, n: int) -> list[TopicNode]:
        return [node for node in self.nodes if node.level == n]

    def to_dict(self) -> dict[str, Any]:
        return {"levels": [*LEVELS, "cluster"], "nodes": [n.to_dict() for n in self.nodes]}


def topic_counts(k: int) -> tuple[int, int]:
    """``(level1, level2)`` topic counts for ``k`` clusters."""
    mid = max(1, min(k, round(math.sqrt(k))))
    top = max(1, round(math.sqrt(mid)))
    if mid >= 3:  # a level above that merges something
        top = max(2, top)
    return min(top, mid), mid


def cut(centres: np.ndarray, groups: list[int]) -> list[np.ndarray]:
    """Group ids (0-based, arbitrary order) of every centroid for each count in ``groups``."""
    k = len(centres)
    if k < 2:
        return [np.zeros(k, dtype=np.int64) for _ in groups]
    from scipy.cluster.hierarchy import fcluster, linkage

    unit = centres / np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
    dist = np.clip(1.0 - unit @ unit.T, 0.0, 2.0)
    condensed = dist[np.triu_indices(k, 1)]
    z = linkage(condensed, method="average")
    return [fcluster(z, t=g, criterion="maxclust").astype(np.int64) - 1 for g in groups]


def _renumber(groups: np.ndarray, texts: np.ndarray) -> np.ndarray:
    """Group ids from the most distinct texts down (ties: the smallest cluster id first)."""
    ids = np.unique(groups)
    size = {int(g): (-int(texts[groups == g].sum()), int(np.flatnonzero(groups == g)[0])) for g in ids}
    order = sorted(size, key=lambda g: size[g])
    new = {g: i for i, g in enumerate(order)}
    return np.array([new[int(g)] for g in groups], dtype=np.int32)


def build_tree(
    ids: list[int],
    centres: np.ndarray,
    rows: np.ndarray,
    texts: np.ndarray,
    docs: dict[int, list[tuple[str, int]]],
    top_words: int,
) -> TopicTree:
    """The tree over the clusters ``ids``: ``centres`` ``(len(ids), dim)``, ``rows`` and ``texts``
    per cluster, ``docs`` each cluster's keyword texts (``clusterer.profiles.class_documents``)."""
    k = len(ids)
    cluster_id = np.asarray(ids, dtype=np.int64)
    top, mid = topic_counts(k)
    level1, level2 = (_renumber(g, texts) for g in cut(centres, [top, mid]))
    nodes: list[TopicNode] = []
    for n, (assign, parents) in enumerate(((level1, None), (level2, level1)), start=1):
        groups = sorted({int(v) for v in assign})
        words = describe({g: _merged(docs, cluster_id[assign == g]) for g in groups}, groups, top_words)
        for g in groups:
            members = np.flatnonzero(assign == g)
            node = TopicNode(
                level=n,
                id=g,
                parent=None if parents is None else int(parents[members[0]]),
                clusters=[int(c) for c in cluster_id[members]],
                rows=int(rows[members].sum()),
                texts=int(texts[members].sum()),
                keywords=words[g].words,
                keywords_from=words[g].source,
            )
            node.children = (
                sorted({int(v) for v in level2[members]}) if n == 1 else [int(c) for c in cluster_id[members]]
            )
            nodes.append(node)
    size = int(cluster_id.max()) + 1 if k else 0
    of_cluster = {}
    for name, assign in (("level1", level1), ("level2", level2)):
        by_id = np.full(size, -1, dtype=np.int32)
        by_id[cluster_id] = assign
        of_cluster[name] = by_id
    return TopicTree(of_cluster, nodes)


def _merged(docs: dict[int, list[tuple[str, int]]], clusters: np.ndarray) -> list[tuple[str, int]]:
    return [pair for c in clusters.tolist() for pair in docs.get(int(c), [])]
