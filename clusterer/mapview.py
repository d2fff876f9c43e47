"""The points of the 2-D map: a stratified sample of the distinct texts, laid out
once and drawn twice (``map.png`` and the interactive ``report.html``).

A uniform sample of a large run shows the big clusters and loses the small
ones; the map's sample is stratified by cluster instead: each cluster (and
the unclustered texts) gets points in proportion to its size, and at least
``MIN_PER_CLUSTER`` (all of it when smaller), so every cluster is visible
and hoverable. ``--map-points`` (default 15,000, at most ``MAX_MAP_POINTS``)
bounds the total; the page says how many of how many it shows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from clusterer.backend import Backend
from clusterer.config import ClusterConfig
from clusterer.plot import layout

if TYPE_CHECKING:
    from clusterer.pipeline import Labelled

MAX_MAP_POINTS = 100_000
"""Points a browser draws and hovers smoothly from one inline JSON."""

MIN_PER_CLUSTER = 30

HOVER_CHARS = 240
"""Characters of a text carried into the page for hovering and search."""


@dataclass
class MapPoints:
    index: np.ndarray
    """Distinct text index of each point (sorted)."""
    xy: np.ndarray
    labels: np.ndarray
    total: int
    """Distinct texts of the run."""

    @property
    def stratified(self) -> bool:
        return len(self.index) < self.total


def stratified_sample(labels: np.ndarray, budget: int, seed: int, floor: int = MIN_PER_CLUSTER) -> np.ndarray:
    """Sorted indices: each label's share of ``budget``, at least ``floor`` (all of a smaller class)."""
    n = len(labels)
    if n <= budget:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.minimum(counts, np.maximum(floor, np.floor(counts * budget / n).astype(np.int64)))
    picks = [
        rng.choice(np.flatnonzero(labels == c), size=int(q), replace=False) for c, q in zip(classes, quota, strict=True)
    ]
    return np.sort(np.concatenate(picks))


def map_points(cfg: ClusterConfig, backend: Backend, result: Labelled) -> MapPoints | None:
    """The map's points laid out in 2-D (None with ``--map-points 0``)."""
    if cfg.map_points <= 0:
        return None
    index = stratified_sample(result.labels, min(cfg.map_points, MAX_MAP_POINTS), cfg.seed)
    xy = layout(backend, np.asarray(result.reduced[index], dtype=np.float32), cfg.reducer != "pca", cfg.seed)
    return MapPoints(index, xy, result.labels[index], len(result.labels))


def _hover(text: str | None) -> str:
    if text is None:
        return ""
    flat = " ".join(text[: HOVER_CHARS * 4].split())
    return flat if len(flat) <= HOVER_CHARS else flat[: HOVER_CHARS - 1] + "…"


def page_data(points: MapPoints, texts: dict[int, str], multiplicity: np.ndarray) -> dict[str, Any]:
    """The map as columns for the page: coordinates scaled to [0, 1000], cluster, rows, hover text."""
    xy = points.xy.astype(np.float64)
    lo, span = xy.min(axis=0), np.ptp(xy, axis=0)
    scaled = np.round((xy - lo) / np.where(span == 0, 1.0, span) * 1000, 1)
    return {
        "x": scaled[:, 0].tolist(),
        "y": scaled[:, 1].tolist(),
        "c": points.labels.astype(int).tolist(),
        "m": multiplicity[points.index].astype(int).tolist(),
        "t": [_hover(texts.get(int(i))) for i in points.index],
        "shown": len(points.index),
        "total": points.total,
        "stratified": points.stratified,
    }


def inline_json(data: Any) -> str:
    """JSON safe inside a ``<script type="application/json">`` element (no ``<``, ``>`` or ``&``)."""
    raw = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return raw.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
