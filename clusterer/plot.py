"""The 2-D map of the clusters (``map.png``).

Up to ``--map-points`` sample points are laid out in two dimensions: UMAP of
their PCA coordinates (with some ``min_dist``, so that clusters read as areas
rather than the threads a ``min_dist=0`` layout draws), or the first two
principal components with ``--reducer pca``.
Noise is drawn small and grey under the clusters; the largest clusters carry
their number and top keyword.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clusterer.backend import Backend

MAP_EPOCHS = 150
"""UMAP epochs for the map: its input is already low-dimensional and well
separated, and a picture needs fewer epochs than the clustering space."""

LABELLED_CLUSTERS = 25
"""Clusters named on the map (the largest ones); more would overlap."""


def layout(backend: Backend, points: np.ndarray, use_umap: bool, seed: int) -> np.ndarray:
    """2-D coordinates for ``points``."""
    if points.shape[1] <= 2 or not use_umap or len(points) < 10:
        out = np.zeros((len(points), 2), dtype=np.float32)
        out[:, : min(2, points.shape[1])] = points[:, :2]
        return out
    model = backend.umap(
        n_components=2, n_neighbors=min(15, len(points) - 1), seed=seed, epochs=MAP_EPOCHS, min_dist=0.1
    )
    return np.asarray(model.fit_transform(points), dtype=np.float32)


def draw_map(
    path: Path, xy: np.ndarray, labels: np.ndarray, names: dict[int, str], title: str, labelled: int = LABELLED_CLUSTERS
) -> None:
    """Scatter plot of ``xy`` coloured by cluster, written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 9), dpi=110)
    noise = labels < 0
    size = max(1.5, min(10.0, 20_000.0 / max(len(xy), 1)))
    ax.scatter(xy[noise, 0], xy[noise, 1], s=size / 2, c="#c8c8c8", alpha=0.5, linewidths=0, label="unclustered")
    cmap = plt.get_cmap("tab20")
    colours = cmap(np.mod(labels[~noise], 20))
    ax.scatter(xy[~noise, 0], xy[~noise, 1], s=size, c=colours, alpha=0.8, linewidths=0)
    for c in sorted({int(v) for v in labels[~noise]})[:labelled]:
        at = np.median(xy[labels == c], axis=0)
        ax.annotate(
            f"{c}: {names.get(c, '')}",
            at,
            fontsize=8,
            ha="center",
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.75},
        )
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    tmp.replace(path)
