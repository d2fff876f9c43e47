"""CPU (umap-learn, hdbscan, a numpy IVF index) or GPU (RAPIDS cuML) implementations
of the three heavy steps, behind one small interface.

``--device auto`` takes the GPU when cuML imports and a CUDA device answers;
both backends write the same outputs. The GPU backend keeps every array in
host memory between steps (results come back as numpy), so the rest of the
pipeline does not care which one ran.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

import numpy as np


class Backend(Protocol):
    name: str

    def umap(
        self, n_components: int, n_neighbors: int, seed: int, epochs: int | None = None, min_dist: float = 0.0
    ) -> Any:
        """An unfitted UMAP model with ``fit_transform`` (``epochs``: None for UMAP's default)."""

    def hdbscan(
        self, points: np.ndarray, min_cluster_size: int, min_samples: int, selection: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """Labels (-1 noise) and membership strengths of ``points``."""

    def neighbours(self, base: np.ndarray, seed: int) -> NeighbourIndex:
        """An index over ``base`` answering k-nearest-neighbour queries."""


class NeighbourIndex(Protocol):
    def query(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices into the base and Euclidean distances, nearest first."""


def _threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class CpuBackend:
    """umap-learn + hdbscan + ``clusterer.assign.IvfIndex`` on all cores."""

    name = "cpu"

    def umap(
        self, n_components: int, n_neighbors: int, seed: int, epochs: int | None = None, min_dist: float = 0.0
    ) -> Any:
        import umap

        # Unseeded on purpose: a fixed random_state makes umap-learn
        # single-threaded (several times slower here); --seed still fixes the
        # sample, the PCA and the index. low_memory=False keeps NN-descent's
        # candidate heaps in memory (small at sample sizes) and measured ~30%
        # faster.
        return umap.UMAP(
            n_components=n_components,
            n_neighbors=n_neighbors,
            min_dist=min_dist,
            metric="euclidean",
            random_state=None,
            transform_seed=seed,
            n_jobs=_threads(),
            low_memory=False,
            n_epochs=epochs,
        )

    def hdbscan(
        self, points: np.ndarray, min_cluster_size: int, min_samples: int, selection: str
    ) -> tuple[np.ndarray, np.ndarray]:
        import hdbscan

        model = hdbscan.HDBSCAN(
            min_cluster_size=min_cluster_size,
            min_samples=min_samples,
            cluster_selection_method=selection,
            core_dist_n_jobs=_threads(),
        ).fit(points)
        return model.labels_.astype(np.int32), model.probabilities_.astype(np.float32)

    def neighbours(self, base: np.ndarray, seed: int) -> NeighbourIndex:
        from clusterer.assign import IvfIndex

        return IvfIndex(base, seed)


class CumlBackend:
    """RAPIDS cuML on the first CUDA device."""

    name = "cuda"

    def umap(
        self, n_components: int, n_neighbors: int, seed: int, epochs: int | None = None, min_dist: float = 0.0
    ) -> Any:
        from cuml.manifold import UMAP

        kw: dict[str, Any] = {"n_epochs": epochs} if epochs else {}
        model = UMAP(n_components=n_components, n_neighbors=n_neighbors, min_dist=min_dist, random_state=seed, **kw)
        return _HostOutput(model)

    def hdbscan(
        self, points: np.ndarray, min_cluster_size: int, min_samples: int, selection: str
    ) -> tuple[np.ndarray, np.ndarray]:
        from cuml.cluster import HDBSCAN

        model = HDBSCAN(
            min_cluster_size=min_cluster_size,
            min_samples=min_samples,
            cluster_selection_method=selection,
            output_type="numpy",
        ).fit(points)
        return np.asarray(model.labels_, dtype=np.int32), np.asarray(model.probabilities_, dtype=np.float32)

    def neighbours(self, base: np.ndarray, seed: int) -> NeighbourIndex:
        return CumlIndex(base)


class _HostOutput:
    """Wraps a cuML estimator so that ``fit_transform`` returns numpy."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.model.output_type = "numpy"

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.fit_transform(x), dtype=np.float32)


class CumlIndex:
    """Exact brute-force neighbours on the GPU."""

    def __init__(self, base: np.ndarray) -> None:
        from cuml.neighbors import NearestNeighbors

        self.n = len(base)
        self.model = NearestNeighbors(output_type="numpy").fit(np.ascontiguousarray(base, dtype=np.float32))

    def query(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        dist, idx = self.model.kneighbors(np.ascontiguousarray(x, dtype=np.float32), n_neighbors=min(k, self.n))
        return np.asarray(idx, dtype=np.int64), np.asarray(dist, dtype=np.float32)


def gpu_available() -> bool:
    """True when cuML imports and at least one CUDA device answers."""
    try:
        import cuml  # noqa: F401
        import cupy  # type: ignore[import-not-found]
    except Exception:  # any import failure (missing, broken CUDA libs) means no GPU path
        return False
    try:
        return int(cupy.cuda.runtime.getDeviceCount()) > 0
    except Exception:  # cupy raises its own CUDA errors when no driver/device is present
        return False


def select_backend(device: str) -> Backend:
    """The backend for ``--device`` (``auto``, ``cpu`` or ``cuda``)."""
    if device == "cpu":
        return CpuBackend()
    if gpu_available():
        return CumlBackend()
    if device == "cuda":
        raise RuntimeError("--device cuda: RAPIDS cuML or a CUDA device is not available here")
    return CpuBackend()
