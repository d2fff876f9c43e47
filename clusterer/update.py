"""``--update``: label the outputs that are new since the last clustering, without refitting.

hdbscan has no ``partial_fit``, and refitting moves every cluster. An update
keeps every earlier text's cluster, probability and outlier flag as they are
in ``clusters.parquet`` (so every earlier row keeps its id), and labels each
new distinct text the way a full run labels the points outside its sample:
through the saved PCA, by the vote of its nearest neighbours in the saved
HDBSCAN sample (``clusterer.state``, ``clusterer.assign``). A new text whose
neighbours are mostly HDBSCAN's noise, or that lies farther from the centroid
of the cluster they vote for than nearly all its core members (its *floor*,
the 1st percentile of their cosine), falls *outside every cluster*; with
``--outliers assign`` it then joins its nearest cluster, flagged ``outlier``,
as in a full run. The update says how many new texts fell outside, and
refits (a full run, whose clusters keep the earlier ids where they match,
``clusterer.stable``) when ``--refit`` asks or when that share passes
``--refit-threshold``: many texts outside every cluster means the data has
moved on and the old clusters no longer describe it.

Centroids stay those of the fit; the new texts' cosine to them is computed
in the same single pass that reads the new embeddings; the map keeps its
saved layout; the new texts join the neighbour index (``clusterer.ann``)
under new ids. So an update reads the embeddings of the new texts only (the
outputs holding none are not opened), plus the text keys of every row.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from clusterer.ann import INDEX_FILE, load_index, save_index
from clusterer.assign import vote
from clusterer.backend import Backend, select_backend
from clusterer.catalog import EmbeddingPart
from clusterer.completeness import Completeness
from clusterer.config import ClusterConfig
from clusterer.describe import Outcome
from clusterer.distinct import Distinct
from clusterer.mapview import MapPoints
from clusterer.outputs import CLUSTERS_FILE, SUMMARY_FILE
from clusterer.progress import Progress
from clusterer.reader import read_keys, stream
from clusterer.results import publish
from clusterer.state import FitState, NoState, load_map, load_state


class RefitNeeded(Exception):
    """The update cannot stand: the reason says why a full fit is needed."""


@dataclass
class Carried:
    """Every distinct text's result: kept from the last clustering, or voted now."""

    outcome: Outcome
    new: np.ndarray
    """Indices of the distinct texts the last clustering did not have."""
    outside: int
    """New texts whose neighbours put them outside every cluster."""


def previous_per_text(prev: pl.DataFrame, keys: pl.DataFrame, distinct: Distinct) -> pl.DataFrame:
    """``index`` (distinct text) with its earlier ``cluster``, ``probability``, ``outlier``,
    ``similarity``: through the rows it had (``input_path``, ``row``), else through its text key
    (a new row repeating an earlier text)."""
    cols = ["cluster", "probability", "outlier", "similarity"]
    rows = (
        keys.select(pl.col("input_path").cast(pl.String), "row")
        .with_columns(index=pl.Series(distinct.of_row))
        .join(prev.select("input_path", "row", *cols), on=["input_path", "row"], how="inner")
        .unique("index", keep="first")
    )
    by_key = (
        pl.DataFrame({"text_key": distinct.key_hex(), "index": np.arange(distinct.texts)})
        .filter(pl.col("text_key").is_not_null() & ~pl.col("index").is_in(rows["index"].implode()))
        .join(prev.filter(pl.col("text_key").is_not_null()).unique("text_key"), on="text_key", how="inner")
        .select("index", *cols)
    )
    return pl.concat([rows.select("index", *cols), by_key])


def vote_new(
    backend: Backend,
    state: FitState,
    parts: list[EmbeddingPart],
    rows: np.ndarray,
    progress: Progress,
    also: Callable[[int, np.ndarray], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Labels, probabilities, outside-every-cluster flags and centroid cosines of the texts at ``rows``
    (``also`` gets every batch of their embeddings too)."""
    n, k = len(rows), state.assign_neighbors
    labels, probs = np.full(n, -1, np.int32), np.zeros(n, np.float32)
    sims = np.full(n, np.nan, np.float32)
    reduced = np.empty((n, state.pca.dims), np.float32)
    full = backend.neighbours(state.sample_points, state.seed)

    def one(lo: int, arr: np.ndarray) -> None:
        if also is not None:
            also(lo, arr)
        x = state.pca.transform(arr)
        reduced[lo : lo + len(arr)] = x
        idx, dist = full.query(x, k)
        lab, prob = vote(state.sample_labels[idx], state.sample_probs[idx], dist)
        voted = lab >= 0
        cos = np.full(len(arr), np.nan, np.float32)
        cos[voted] = (arr[voted] * state.centres[lab[voted]]).sum(1)
        far = voted & (cos < state.floors[np.maximum(lab, 0)])
        lab[far], prob[far], cos[far] = -1, 0.0, np.nan
        labels[lo : lo + len(arr)], probs[lo : lo + len(arr)] = lab, prob
        sims[lo : lo + len(arr)] = cos

    stream(parts, one, progress, "new texts labelled", select=rows)
    outside = labels < 0
    clustered = state.sample_labels >= 0
    if state.outliers == "assign" and outside.any() and clustered.any():
        index = backend.neighbours(state.sample_points[clustered], state.seed)
        at = np.flatnonzero(outside)
        idx, dist = index.query(reduced[at], k)
        labels[at], probs[at] = vote(state.sample_labels[clustered][idx], state.sample_probs[clustered][idx], dist)
    return labels, probs, outside, sims


def carry(
    cfg: ClusterConfig,
    backend: Backend,
    state: FitState,
    parts: list[EmbeddingPart],
    keys: pl.DataFrame,
    distinct: Distinct,
    progress: Progress,
    index: Any = None,
) -> Carried:
    prev = pl.read_parquet(cfg.out / CLUSTERS_FILE)
    if "similarity" not in prev.columns:
        raise RefitNeeded(f"{cfg.out / CLUSTERS_FILE} predates updates (no similarity column)")
    known = previous_per_text(prev, keys, distinct)
    n = distinct.texts
    labels, probs = np.full(n, -1, np.int32), np.zeros(n, np.float32)
    outlier, sims = np.zeros(n, bool), np.full(n, np.nan, np.float32)
    at = known["index"].to_numpy()
    labels[at] = known["cluster"].to_numpy()
    probs[at] = known["probability"].to_numpy()
    outlier[at] = known["outlier"].to_numpy()
    sims[at] = known["similarity"].to_numpy()
    new = np.setdiff1d(np.arange(n), at)
    if len(new):
        base = int(index.ntotal) if index is not None else 0

        def add(lo: int, arr: np.ndarray) -> None:
            index.add_with_ids(np.ascontiguousarray(arr), np.arange(base + lo, base + lo + len(arr), dtype=np.int64))

        rows = distinct.first_row[new]
        lab, prob, outside, cos = vote_new(backend, state, parts, rows, progress, add if index is not None else None)
        labels[new], probs[new], outlier[new], sims[new] = lab, prob, outside, cos
    else:
        outside = np.zeros(0, bool)
    return Carried(Outcome(labels, probs, outlier, sims, state.centres), new, int(outside.sum()))


def saved_map(cfg: ClusterConfig, distinct: Distinct, labels: np.ndarray) -> tuple[MapPoints | None, dict[int, str]]:
    frame = load_map(cfg.out)
    if frame is None or cfg.map_points <= 0:
        return None, {}
    now = pl.DataFrame({"text_key": distinct.key_hex(), "index": np.arange(distinct.texts)})
    joined = frame.join(now.filter(pl.col("text_key").is_not_null()), on="text_key", how="inner").sort("index")
    index = joined["index"].to_numpy()
    xy = np.stack([joined["x"].to_numpy(), joined["y"].to_numpy()], axis=1).astype(np.float32)
    texts = dict(zip(index.tolist(), joined["t"].to_list(), strict=True))
    return MapPoints(index, xy, labels[index], distinct.texts), texts


def grown_texts(table: pl.DataFrame, keys: pl.DataFrame, distinct: Distinct, carried: Carried) -> pl.DataFrame:
    """The index's texts with the new ones appended (ids follow), rows counted afresh."""
    new = carried.new
    added = keys[distinct.first_row[new]].select(pl.col("input_path").cast(pl.String), "row")
    added = added.with_columns(
        text_key=distinct.key_hex().gather(new),
        cluster=pl.Series(carried.outcome.labels[new], dtype=pl.Int32),
        rows=pl.Series(distinct.multiplicity[new], dtype=pl.Int64),
    )
    now = pl.DataFrame({"text_key": distinct.key_hex(), "now": distinct.multiplicity}).drop_nulls("text_key")
    old = (
        table.join(now.unique("text_key"), on="text_key", how="left", maintain_order="left")
        .with_columns(rows=pl.coalesce("now", "rows"))
        .drop("now")
    )
    return pl.concat([old, added.select(old.columns)])


def update_info(cfg: ClusterConfig, carried: Carried, distinct: Distinct, seconds: float) -> dict[str, Any]:
    new_rows = int(distinct.multiplicity[carried.new].sum())
    return {
        "new_texts": len(carried.new),
        "new_rows": new_rows,
        "outside_texts": carried.outside,
        "outside_share": round(carried.outside / max(len(carried.new), 1), 6),
        "refit_threshold": cfg.refit_threshold,
        "seconds_labelling": round(seconds, 2),
    }


def update(
    cfg: ClusterConfig, run_state: Completeness, distinct: Distinct, progress: Progress
) -> dict[str, Any] | None:
    """Write the results of an update; None when a refit is needed (the caller fits, saying why)."""
    parts = run_state.usable
    try:
        state = load_state(cfg.out)
    except NoState as e:
        progress.say(f"--update: {e}; fitting instead")
        return None
    if state.model != run_state.model:
        progress.say(f"--update: the last fit used model {state.model}, this run {run_state.model}; refitting")
        return None
    backend = select_backend(cfg.device)
    with progress.step("reading row keys"):
        keys = read_keys(parts)
    started = time.monotonic()
    index, table = None, None
    if cfg.index and (cfg.out / INDEX_FILE).is_file():
        index, table = load_index(cfg.out)
    try:
        with progress.step("labelling the new texts with the last fit"):
            carried = carry(cfg, backend, state, parts, keys, distinct, progress, index)
    except RefitNeeded as e:
        progress.say(f"--update: {e}; refitting")
        return None
    info = update_info(cfg, carried, distinct, time.monotonic() - started)
    progress.say(
        f"  {info['new_texts']:,} new distinct texts ({info['new_rows']:,} rows); {info['outside_texts']:,} "
        f"({100 * info['outside_share']:.1f}%) fell outside every cluster"
    )
    if cfg.refit or info["outside_share"] > cfg.refit_threshold:
        why = "--refit" if cfg.refit else f"more than {100 * cfg.refit_threshold:.0f}% fell outside (--refit-threshold)"
        progress.say(f"--update: refitting ({why}); clusters that match keep their ids")
        return None
    if index is not None and table is not None:
        with progress.step("adding the new texts to the neighbour index"):
            save_index(cfg.out, index, grown_texts(table, keys, distinct, carried))
    points, texts = saved_map(cfg, distinct, carried.outcome.labels)
    earlier = json.loads((cfg.out / SUMMARY_FILE).read_text(encoding="utf-8"))
    extra = {"parameters": earlier.get("parameters", {}), "update": info}
    summary, _ = publish(cfg, run_state, parts, keys, distinct, carried.outcome, points, extra, progress, texts)
    return summary
