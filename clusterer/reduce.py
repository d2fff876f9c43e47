"""Dimension reduction: PCA fitted on a sample and applied to every point in
a stream, then UMAP on the sample only.

PCA is a plain eigen-decomposition of the sample's covariance (384 x 384):
exact, deterministic (signs fixed), and applied batch by batch, so the full
384-dimensional matrix is never held in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from clusterer.backend import Backend


@dataclass(frozen=True)
class Pca:
    """A fitted projection: ``(x - mean) @ components``."""

    mean: np.ndarray
    components: np.ndarray
    kept_variance: float

    @property
    def dims(self) -> int:
        return int(self.components.shape[1])

    def transform(self, x: np.ndarray) -> np.ndarray:
        return np.asarray((x - self.mean) @ self.components, dtype=np.float32)


def fit_pca(sample: np.ndarray, dims: int) -> Pca:
    """Principal components of ``sample`` (rows are points)."""
    x = sample.astype(np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    cov = centred.T @ centred / max(len(x) - 1, 1)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1][: min(dims, x.shape[1])]
    comps = vectors[:, order]
    signs = np.sign(comps[np.abs(comps).argmax(axis=0), np.arange(comps.shape[1])])
    comps *= np.where(signs == 0, 1.0, signs)
    total = float(values.clip(min=0).sum()) or 1.0
    kept = float(values[order].clip(min=0).sum()) / total
    return Pca(mean.astype(np.float32), comps.astype(np.float32), kept)


def identity_pca(dim: int) -> Pca:
    """No projection (reducer ``umap`` alone works on the raw vectors)."""
    return Pca(np.zeros(dim, np.float32), np.eye(dim, dtype=np.float32), 1.0)


@dataclass
class Reduced:
    """A sample in the clustering space, and the model that put it there."""

    points: np.ndarray
    model: Any


def umap_sample(backend: Backend, x: np.ndarray, dims: int, neighbors: int, seed: int) -> Reduced:
    """UMAP of the sample into ``dims`` dimensions (HDBSCAN's space)."""
    n_neighbors = max(2, min(neighbors, len(x) - 1))
    model = backend.umap(n_components=dims, n_neighbors=n_neighbors, seed=seed)
    points = np.asarray(model.fit_transform(x), dtype=np.float32)
    return Reduced(points, model)
