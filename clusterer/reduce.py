"""Dimension reduction: PCA fitted on a sample and applied to every point in
a stream, then UMAP on the sample only.

PCA is a plain eigen-decomposition of the sample's covariance (384 x 384):
exact, deterministic (signs fixed), and applied batch by batch, so the full
384-dimensional matrix is never held in memory.

umap-learn warns "Graph is not fully connected" when the neighbour graph
falls apart in pieces (tight groups of near-identical texts), then
"Spectral initialisation failed" once per piece whose eigenvectors it cannot
solve for (too small an eigengap), up to dozens of times in one run, and lays
those pieces out from random points, as it says. Neither is something a user
can act on: ``fit_umap`` counts them into one line of ours and lets every
other warning through.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from clusterer.backend import Backend

log = logging.getLogger("embedfleet.clusterer")

SPECTRAL_FAILED = "Spectral initialisation failed"
"""The start of umap-learn's warning when its spectral initialisation gives up."""
DISCONNECTED = "Graph is not fully connected"
"""The start of umap-learn's warning when the neighbour graph is in pieces."""


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
    points = fit_umap(model, x)
    return Reduced(points, model)


def fit_umap(model: Any, x: np.ndarray, what: str = "UMAP") -> np.ndarray:
    """``model.fit_transform(x)`` as float32, its spectral-initialisation
    warnings counted into one log line (module docstring); any other warning
    is passed on as it came."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        points = np.asarray(model.fit_transform(x), dtype=np.float32)
    failed, disconnected = 0, False
    for w in caught:
        text = str(w.message)
        if issubclass(w.category, UserWarning) and text.startswith(SPECTRAL_FAILED):
            failed += 1
        elif issubclass(w.category, UserWarning) and text.startswith(DISCONNECTED):
            disconnected = True
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    if failed or disconnected:
        log.warning(
            "%s: the neighbour graph of %d points is %s; %s",
            what,
            len(x),
            "in several pieces" if disconnected else "connected",
            f"the spectral start failed on {failed} of them (too small an eigengap): they started from random points"
            if failed
            else "each piece was laid out on its own",
        )
    return points
