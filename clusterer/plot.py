"""The 2-D map of the clusters (``map.png``).

Up to ``--map-points`` sample points are laid out in two dimensions: UMAP of
their PCA coordinates (with some ``min_dist``, so that clusters read as areas
rather than the threads a ``min_dist=0`` layout draws), or the first two
principal components with ``--reducer pca``.
Noise is drawn small and grey under the clusters. The largest clusters carry
their number and first keyword in a box placed where it overlaps no other
label (``place_labels`` tries spots around the cluster's median and leaves a
label out rather than draw it over another); the title says how many are
labelled. Labels and title are drawn with ``clusterer.glyphs``' fonts, and a
character none of them has is replaced first, so saving warns of no missing
glyph and no label is blank.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clusterer.backend import Backend
from clusterer.glyphs import map_fonts, visible
from clusterer.reduce import fit_umap

MAP_EPOCHS = 150
"""UMAP epochs for the map: its input is already low-dimensional and well
separated, and a picture needs fewer epochs than the clustering space."""

LABELLED_CLUSTERS = 60
"""Clusters the map tries to name (the largest first); each label goes where it
overlaps no other, or is left out."""

LABEL_CHARS = 32
"""Longest label (cluster id and its first keyword)."""

MAP_DPI = 110


def layout(backend: Backend, points: np.ndarray, use_umap: bool, seed: int) -> np.ndarray:
    """2-D coordinates for ``points``."""
    if points.shape[1] <= 2 or not use_umap or len(points) < 10:
        out = np.zeros((len(points), 2), dtype=np.float32)
        out[:, : min(2, points.shape[1])] = points[:, :2]
        return out
    model = backend.umap(
        n_components=2, n_neighbors=min(15, len(points) - 1), seed=seed, epochs=MAP_EPOCHS, min_dist=0.1
    )
    return fit_umap(model, points, "map layout (UMAP)")


LABEL_OFFSETS = [(0, 0), (0, 14), (0, -14), (28, 0), (-28, 0), (0, 28), (0, -28), (36, 16), (-36, 16), (36, -16)]
"""Where a label may go around its cluster's median, in points, tried in order."""


@dataclass(frozen=True)
class LabelBox:
    """A label drawn on the map and its box in the PNG's pixels (origin bottom left)."""

    text: str
    x0: float
    y0: float
    x1: float
    y1: float

    def overlaps(self, other: LabelBox) -> bool:
        return self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1 and other.y0 < self.y1


def place_labels(ax: Any, labels: list[tuple[str, np.ndarray]]) -> list[LabelBox]:
    """Label clusters (largest first), each at the first free spot near its median inside the
    axes; a label with no free spot is left out rather than drawn over another."""
    from matplotlib.transforms import Bbox

    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    families = list(map_fonts().families)
    placed: list[LabelBox] = []
    for text, at in labels:
        for dx, dy in LABEL_OFFSETS:
            ann = ax.annotate(
                text,
                at,
                xytext=(dx, dy),
                textcoords="offset points",
                fontsize=8,
                fontfamily=families,
                parse_math=False,  # a "$" in a frequent text is not mathtext
                ha="center",
                va="center",
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "#888", "lw": 0.4, "alpha": 0.85},
            )
            text_ext = ann.get_window_extent(renderer)  # lays the text out (otherwise done at draw time)
            ann.update_bbox_position_size(renderer)
            ext = Bbox.union([text_ext, ann.get_bbox_patch().get_window_extent(renderer)])
            box = LabelBox(text, ext.x0, ext.y0, ext.x1, ext.y1)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(p) for p in placed):
                placed.append(box)
                break
            ann.remove()
    return placed


def label_text(cluster: int, name: str) -> str:
    """``"<id>: <name>"`` within ``LABEL_CHARS``, in characters the map's fonts can draw;
    ``"<id>: cluster <id>"`` when nothing of the name is left."""
    shown = " ".join(map_fonts().drawable(name).split())
    text = f"{cluster}: {shown if visible(shown) else f'cluster {cluster}'}"
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def draw_map(
    path: Path, xy: np.ndarray, labels: np.ndarray, names: dict[int, str], title: str, labelled: int = LABELLED_CLUSTERS
) -> list[LabelBox]:
    """Scatter plot of ``xy`` coloured by cluster, written as a PNG; returns the labels' boxes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 9), dpi=MAP_DPI)
    noise = labels < 0
    size = max(1.5, min(10.0, 20_000.0 / max(len(xy), 1)))
    ax.scatter(xy[noise, 0], xy[noise, 1], s=size / 2, c="#c8c8c8", alpha=0.5, linewidths=0, label="unclustered")
    cmap = plt.get_cmap("tab20")
    colours = cmap(np.mod(labels[~noise], 20))
    ax.scatter(xy[~noise, 0], xy[~noise, 1], s=size, c=colours, alpha=0.8, linewidths=0)
    ax.set_xticks([])
    ax.set_yticks([])
    title = map_fonts().drawable(title)
    families = list(map_fonts().families)
    # the title's second line is filled in once the labels are placed
    ax.set_title(f"{title}\n ", fontsize=10, fontfamily=families)
    fig.tight_layout()
    ids = sorted({int(v) for v in labels[~noise]})
    wanted = [(label_text(c, names.get(c) or f"cluster {c}"), np.median(xy[labels == c], axis=0)) for c in ids]
    boxes = place_labels(ax, wanted[:labelled])
    note = f"{len(boxes)} of {len(ids)} clusters labelled"
    if len(boxes) < len(ids):
        note += " (report.html names all)"
    ax.set_title(f"{title}\n{note}", fontsize=10, fontfamily=families)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=MAP_DPI)
    plt.close(fig)
    tmp.replace(path)
    return boxes
