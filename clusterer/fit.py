"""Cluster the sample: reduce it to HDBSCAN's space and run HDBSCAN there.

Points are distinct texts (``clusterer.distinct``). Sizes given on the
command line are in distinct texts of the whole run; HDBSCAN sees only the
sample, so ``min_cluster_size`` is scaled by the sampling rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clusterer.backend import Backend
from clusterer.config import ClusterConfig
from clusterer.reduce import umap_sample

AUTO_CLUSTER_SHARE = 0.005
"""Default smallest cluster: 0.5% of the run's distinct texts (at least 20),
so that a report lists at most ~200 clusters, each big enough to read as a
topic."""

MIN_SAMPLE_CLUSTER = 5
"""A cluster in the sample needs at least this many points to be found."""


@dataclass
class SampleClusters:
    """Labels and membership strengths of the sample, and the space they live in."""

    labels: np.ndarray
    probabilities: np.ndarray
    points: np.ndarray
    min_cluster_size: int
    min_samples: int


def run_min_cluster_size(cfg: ClusterConfig, n_points: int) -> int:
    """Smallest cluster in distinct texts of the whole run (asked for, or automatic)."""
    if cfg.min_cluster_size is not None:
        return cfg.min_cluster_size
    return max(20, round(AUTO_CLUSTER_SHARE * n_points))


def sample_parameters(cfg: ClusterConfig, n_points: int, n_sample: int) -> tuple[int, int]:
    """``(min_cluster_size, min_samples)`` for HDBSCAN on the sample."""
    rate = n_sample / max(n_points, 1)
    mcs = max(MIN_SAMPLE_CLUSTER, round(run_min_cluster_size(cfg, n_points) * rate))
    ms = cfg.min_samples if cfg.min_samples is not None else mcs  # HDBSCAN's own default; see docs
    return mcs, max(1, min(ms, n_sample - 1))


def cluster_sample(backend: Backend, cfg: ClusterConfig, reduced: np.ndarray, n_points: int) -> SampleClusters:
    """UMAP (unless ``--reducer pca``) then HDBSCAN on the sample."""
    if cfg.reducer == "pca":
        points = reduced[:, : cfg.dims] if reduced.shape[1] > cfg.dims else reduced
    else:
        points = umap_sample(backend, reduced, cfg.dims, cfg.umap_neighbors, cfg.seed).points
    mcs, ms = sample_parameters(cfg, n_points, len(points))
    if len(points) <= mcs:
        labels = np.full(len(points), -1, dtype=np.int32)
        probs = np.zeros(len(points), dtype=np.float32)
    else:
        labels, probs = backend.hdbscan(points, mcs, ms, cfg.selection)
    return SampleClusters(labels, probs, points, mcs, ms)


def relabel_by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters 0, 1, ... from the largest down; noise stays -1."""
    found = labels[labels >= 0]
    if not len(found):
        return labels
    counts = np.bincount(found)
    order = np.argsort(-counts, kind="stable")
    mapping = np.full(len(counts), -1, dtype=np.int32)
    mapping[order] = np.arange(len(counts), dtype=np.int32)
    mapping[counts == 0] = -1
    out = labels.copy()
    out[labels >= 0] = mapping[labels[labels >= 0]]
    return out
