"""Step 7: every result file of a run under ``--out``.

The clusters are described (centroids, the texts the reports need, read back
in one pass: keyword samples, representatives and the map's points) and
merged into the topic tree; ``clusters.parquet`` is written with the tree's
levels, the map is drawn, the summary and both reports follow. A full fit
also leaves what ``--update`` needs (``clusterer.state``). Clusters are
counted in rows and in distinct texts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from clusterer import outputs
from clusterer.ann import save_index
from clusterer.backend import Backend
from clusterer.catalog import EmbeddingPart
from clusterer.completeness import Completeness
from clusterer.config import ClusterConfig
from clusterer.describe import Described, Outcome, describe_clusters
from clusterer.distinct import Distinct
from clusterer.mapview import MapPoints, map_points, page_data
from clusterer.plot import draw_map
from clusterer.progress import Progress
from clusterer.report import render_html, render_markdown
from clusterer.state import FitState, save_map, save_state
from clusterer.summary import parameters, summarise
from clusterer.tree import LEVELS, TopicTree, build_tree

if TYPE_CHECKING:
    from clusterer.pipeline import Labelled


def topic_tree(described: Described, top_words: int) -> TopicTree:
    ids = [p.cluster for p in described.profiles]
    rows = np.array([p.rows for p in described.profiles], dtype=np.int64)
    texts = np.array([p.texts for p in described.profiles], dtype=np.int64)
    return build_tree(ids, described.centres[ids], rows, texts, described.docs, top_words)


def map_name(keywords: list[tuple[str, float]], source: str) -> str:
    """A cluster's name on the map: its first keyword (quoted when it is a frequent text)."""
    return f"“{keywords[0][0]}”" if source == "texts" else keywords[0][0]


def draw(cfg: ClusterConfig, distinct: Distinct, described: Described, points: MapPoints) -> dict[str, Any]:
    """``map.png``; returns what the summary says about the map."""
    names = {p.cluster: map_name(p.keywords, p.keywords_from) for p in described.profiles}
    shown = f"{len(points.index):,} texts shown" + (", stratified by cluster" if points.stratified else "")
    title = f"{len(described.profiles)} clusters of {distinct.texts:,} distinct texts ({distinct.rows:,} rows; {shown})"
    boxes = draw_map(cfg.out / outputs.MAP_FILE, points.xy, points.labels, names, title)
    return {
        "map": outputs.MAP_FILE,
        "map_points": {
            "shown": len(points.index),
            "total": points.total,
            "stratified": points.stratified,
            "labelled": len(boxes),
        },
    }


def publish(
    cfg: ClusterConfig,
    run_state: Completeness,
    parts: list[EmbeddingPart],
    keys: pl.DataFrame,
    distinct: Distinct,
    outcome: Outcome,
    points: MapPoints | None,
    extra: dict[str, Any],
    progress: Progress,
    map_texts: dict[int, str] | None = None,
) -> tuple[dict[str, Any], Described]:
    """Describe, then write clusters.parquet, the map, the summary and the reports; returns the
    summary and the description. ``map_texts``: the map's hover texts when known (an update)."""
    cfg.out.mkdir(parents=True, exist_ok=True)
    shown = points.index if points is not None and map_texts is None else np.zeros(0, dtype=np.int64)
    described = describe_clusters(cfg, parts, keys, distinct, outcome, shown, progress)
    with progress.step("topic tree"):
        tree = topic_tree(described, cfg.top_words)
    with progress.step("writing clusters.parquet"):
        outputs.write_clusters(
            cfg.out / outputs.CLUSTERS_FILE,
            keys.with_columns(distinct.text_key_hex(), multiplicity=pl.Series(distinct.per_row(distinct.multiplicity))),
            distinct.per_row(outcome.labels),
            distinct.per_row(outcome.probabilities),
            distinct.per_row(outcome.outlier),
            {name: distinct.per_row(tree.per_label(name, outcome.labels)) for name in LEVELS},
            distinct.per_row(described.similarity),
        )
    page = None
    if points is not None:
        with progress.step("drawing the map"):
            extra = {**extra, **draw(cfg, distinct, described, points)}
            page = page_data(points, map_texts if map_texts is not None else described.texts, distinct.multiplicity)
    summary = summarise(run_state, distinct, outcome, described, tree, {**extra, "timings": dict(progress.timings)})
    outputs.write_summary(cfg.out / outputs.SUMMARY_FILE, summary)
    outputs.write_text(cfg.out / outputs.REPORT_MD, render_markdown(summary))
    outputs.write_text(cfg.out / outputs.REPORT_HTML, render_html(summary, page))
    if page is not None and points is not None:
        save_map(cfg.out, map_frame(keys, distinct, points, page["t"]))
    return summary, described


def map_frame(keys: pl.DataFrame, distinct: Distinct, points: MapPoints, hover: list[str]) -> pl.DataFrame:
    """The map's points by text, for ``clusterer.state.save_map``."""
    first = keys[distinct.first_row[points.index]].select(pl.col("input_path").cast(pl.String), "row")
    return first.with_columns(
        text_key=distinct.key_hex().gather(points.index),
        x=pl.Series(points.xy[:, 0], dtype=pl.Float32),
        y=pl.Series(points.xy[:, 1], dtype=pl.Float32),
        t=pl.Series(hover, dtype=pl.String),
    )


FLOOR_QUANTILE = 0.01


def cluster_floors(labels: np.ndarray, sims: np.ndarray, size: int) -> np.ndarray:
    """Per cluster id: the ``FLOOR_QUANTILE`` of its core members' cosine to its centroid
    (``-inf`` for an id with none)."""
    floors = np.full(size, -np.inf, dtype=np.float32)
    core = (labels >= 0) & ~np.isnan(sims)
    for c in np.unique(labels[core]).tolist():
        floors[c] = np.quantile(sims[core & (labels == c)], FLOOR_QUANTILE)
    return floors


def fit_state(cfg: ClusterConfig, model: str, result: Labelled, described: Described) -> FitState:
    """What ``--update`` needs from this fit: the sample under the final ids, HDBSCAN's noise as -1."""
    sample = result.sample_index
    core = np.where(result.outlier[sample], -1, result.labels[sample])
    return FitState(
        model=model,
        pca=result.pca,
        sample_points=np.asarray(result.sample_reduced, dtype=np.float32),
        sample_labels=core,
        sample_probs=result.probabilities[sample],
        centres=described.centres,
        assign_neighbors=cfg.assign_neighbors,
        outliers=cfg.outliers,
        seed=cfg.seed,
        floors=cluster_floors(result.labels, described.similarity, len(described.centres)),
    )


def write_results(
    cfg: ClusterConfig,
    backend: Backend,
    run_state: Completeness,
    parts: list[EmbeddingPart],
    keys: pl.DataFrame,
    distinct: Distinct,
    result: Labelled,
    progress: Progress,
) -> dict[str, Any]:
    """Every result file of a full fit under ``cfg.out``; returns the summary."""
    cfg.out.mkdir(parents=True, exist_ok=True)
    with progress.step("laying out the map"):
        points = map_points(cfg, backend, result)
    outcome = Outcome(result.labels, result.probabilities, result.outlier)
    extra = {
        "parameters": parameters(cfg, backend, result, distinct.texts),
        "ids": result.ids.to_dict() if result.ids is not None else None,
    }
    summary, described = publish(cfg, run_state, parts, keys, distinct, outcome, points, extra, progress)
    save_state(cfg.out, fit_state(cfg, run_state.model, result, described))
    if described.index is not None:
        with progress.step("saving the neighbour index"):
            save_index(cfg.out, described.index, index_texts(keys, distinct, outcome.labels))
    return summary


def index_texts(keys: pl.DataFrame, distinct: Distinct, labels: np.ndarray) -> pl.DataFrame:
    """What each id of the neighbour index stands for (id = distinct text index)."""
    first = keys[distinct.first_row].select(pl.col("input_path").cast(pl.String), "row")
    return first.with_columns(
        text_key=distinct.key_hex(),
        cluster=pl.Series(labels, dtype=pl.Int32),
        rows=pl.Series(distinct.multiplicity, dtype=pl.Int64),
    )
