"""What a fit leaves beside ``clusters.parquet`` so that ``--update`` can label
new outputs without refitting, and redraw the same map.

- ``clusters_model.npz``: the PCA (mean, components), the sample HDBSCAN was
  fitted on (its PCA coordinates, its labels under the run's final ids with
  HDBSCAN's noise as -1, its membership strengths), the clusters' unit
  centroids by id (384 dims), each cluster's *floor* (the least cosine to its
  centroid that its core members have) and the settings the vote needs. A new text is
  labelled exactly as a full run labels the points outside its sample: the
  vote of its nearest sample neighbours (``clusterer.assign``).
- ``clusters_map.parquet``: the map's points, by text (``text_key``, and the
  first row holding the text), their 2-D position and hover text.

Both are written to a hidden temporary name and renamed into place. About
10 MB for a 40,000-point sample at 50 dimensions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from clusterer.outputs import publish_file
from clusterer.reduce import Pca

MODEL_FILE = "clusters_model.npz"
MAP_POINTS_FILE = "clusters_map.parquet"
STATE_VERSION = 1


class NoState(Exception):
    """``--update`` found no fit to update in ``--out``."""


@dataclass
class FitState:
    model: str
    pca: Pca
    sample_points: np.ndarray
    sample_labels: np.ndarray
    """Final ids of the sample's core members; -1 where HDBSCAN found noise."""
    sample_probs: np.ndarray
    centres: np.ndarray
    """``(max id + 1, dim)`` unit centroids by cluster id."""
    assign_neighbors: int
    outliers: str
    seed: int
    floors: np.ndarray
    """Per cluster id: the least cosine to its centroid its core members have (their 1st
    percentile): a new text farther from the centroid of the cluster its neighbours vote for lies
    outside every cluster."""


def save_state(out: Path, state: FitState) -> None:
    tmp = out / f".{MODEL_FILE}.{os.getpid()}.tmp.npz"
    np.savez(
        tmp,
        version=np.array(STATE_VERSION),
        model=np.array(state.model),
        pca_mean=state.pca.mean,
        pca_components=state.pca.components,
        pca_kept=np.array(state.pca.kept_variance),
        sample_points=state.sample_points.astype(np.float32),
        sample_labels=state.sample_labels.astype(np.int32),
        sample_probs=state.sample_probs.astype(np.float32),
        centres=state.centres.astype(np.float32),
        assign_neighbors=np.array(state.assign_neighbors),
        outliers=np.array(state.outliers),
        seed=np.array(state.seed),
        floors=state.floors.astype(np.float32),
    )
    publish_file(tmp, out / MODEL_FILE)


def load_state(out: Path) -> FitState:
    path = out / MODEL_FILE
    if not path.is_file():
        raise NoState(f"no earlier fit in {out} ({MODEL_FILE} is missing): run a full clustering first")
    with np.load(path) as z:
        if int(z["version"]) != STATE_VERSION:
            raise NoState(f"{path} was written by another version of the clusterer: refit (drop --update)")
        return FitState(
            model=str(z["model"]),
            pca=Pca(z["pca_mean"], z["pca_components"], float(z["pca_kept"])),
            sample_points=z["sample_points"],
            sample_labels=z["sample_labels"],
            sample_probs=z["sample_probs"],
            centres=z["centres"],
            assign_neighbors=int(z["assign_neighbors"]),
            outliers=str(z["outliers"]),
            seed=int(z["seed"]),
            floors=z["floors"],
        )


def save_map(out: Path, points: pl.DataFrame) -> None:
    """``points``: ``text_key``, ``input_path``, ``row``, ``x``, ``y``, ``t`` (hover text)."""
    tmp = out / f".{MAP_POINTS_FILE}.{os.getpid()}.tmp"
    points.write_parquet(tmp, compression="zstd")
    publish_file(tmp, out / MAP_POINTS_FILE)


def load_map(out: Path) -> pl.DataFrame | None:
    path = out / MAP_POINTS_FILE
    return pl.read_parquet(path) if path.is_file() else None
