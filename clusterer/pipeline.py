"""One clustering run, start to finish.

1. gate: what may be clustered (``clusterer.gate``);
2. distinct texts: every row keyed by its text, read from the inputs
   (``clusterer.textkeys``), and rows grouped by key (``clusterer.distinct``);
   a *point* from here on is one distinct text, represented by its first row;
3. sample: read a uniform random sample of the points' embeddings;
4. PCA fitted on the sample, applied to every point in a stream;
5. UMAP + HDBSCAN on the sample (``clusterer.fit``);
6. every point labelled by its nearest sample neighbours, outliers included
   unless ``--outliers keep`` (``clusterer.assign``);
7. every row takes the label of its text: ``clusters.parquet``; profiles,
   keywords and texts; map; summary; report.

Memory stays at O(rows x 16 bytes + texts x PCA dims) plus one batch of full
embeddings: the 384-dimensional vectors are streamed four times (sample,
projection, centroids, similarities) rather than held.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from clusterer.assign import label_all
from clusterer.backend import Backend, select_backend
from clusterer.catalog import EmbeddingPart
from clusterer.config import ClusterConfig
from clusterer.distinct import Distinct, deduplicate
from clusterer.fit import SampleClusters, cluster_sample, relabel_by_size, run_min_cluster_size
from clusterer.gate import open_run
from clusterer.outputs import CLUSTERS_FILE
from clusterer.progress import Progress
from clusterer.reader import gather, read_keys, stream
from clusterer.reduce import Pca, fit_pca, identity_pca
from clusterer.results import write_results
from clusterer.stable import IdMatch, match_ids, previous_labels
from clusterer.textkeys import row_keys


@dataclass
class Labelled:
    """The outcome of clustering: a label and a probability per point (distinct text)."""

    labels: np.ndarray
    probabilities: np.ndarray
    outlier: np.ndarray
    """HDBSCAN found the point in no dense region (its cluster, if any, was
    given by its nearest clustered neighbours)."""
    sample_index: np.ndarray
    sample: SampleClusters
    pca: Pca
    sample_reduced: np.ndarray
    """The sample's PCA coordinates."""
    reduced: np.ndarray
    """Every point's PCA coordinates (the map's points are laid out from them)."""
    ids: IdMatch | None = None
    """How the clusters were numbered against the previous run in ``--out`` (None: from the largest down)."""


def choose_sample(n: int, size: int, seed: int) -> np.ndarray:
    """Sorted positions of a uniform random sample (everything when small)."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def project_all(parts: list[EmbeddingPart], pca: Pca, rows: np.ndarray, dtype: str, progress: Progress) -> np.ndarray:
    """The embeddings of ``rows`` (sorted) through the PCA, into one ``len(rows) x dims`` array."""
    out = np.empty((len(rows), pca.dims), dtype=np.dtype(dtype))

    def put(lo: int, arr: np.ndarray) -> None:
        out[lo : lo + len(arr)] = pca.transform(arr)

    stream(parts, put, progress, "embeddings projected", select=rows)
    return out


def distinct_texts(cfg: ClusterConfig, parts: list[EmbeddingPart], progress: Progress) -> Distinct:
    """Step 2: the distinct texts of the run and the rows holding each."""
    with progress.step("reading texts and keying them"):
        keys = row_keys(cfg.input_root, parts, cfg.text_column, progress)
        distinct = deduplicate(keys)
    if distinct.unreadable:
        rows = int((~keys.by_text).sum())
        progress.say(
            f"warning: texts of {len(distinct.unreadable):,} output(s) ({rows:,} rows) could not be read from "
            f"the inputs; their rows are deduplicated by identical embedding vectors instead:\n  "
            + "\n  ".join(distinct.unreadable[:5])
        )
    repeats = 1 - distinct.texts / max(distinct.rows, 1)
    progress.say(f"{distinct.rows:,} rows hold {distinct.texts:,} distinct texts ({100 * repeats:.1f}% repeats)")
    return distinct


def label_points(
    backend: Backend, cfg: ClusterConfig, parts: list[EmbeddingPart], distinct: Distinct, progress: Progress
) -> Labelled:
    """Steps 3-6: the clusters of every distinct text."""
    n = distinct.texts
    index = choose_sample(n, cfg.sample_size, cfg.seed)
    with progress.step(f"reading a sample of {len(index):,} embeddings"):
        sample = gather(parts, distinct.first_row[index], progress, "embeddings scanned")
    dims = cfg.pca_dims if cfg.reducer != "pca" else max(cfg.pca_dims, cfg.dims)
    with progress.step(f"PCA to {dims} dimensions"):
        pca = identity_pca(sample.shape[1]) if cfg.reducer == "umap" else fit_pca(sample, dims)
        progress.say(f"  PCA keeps {100 * pca.kept_variance:.1f}% of the variance")
        del sample
        reduced = project_all(parts, pca, distinct.first_row, cfg.dtype, progress)
    with progress.step(f"{cfg.reducer} + HDBSCAN on {len(index):,} sample points ({backend.name})"):
        base = np.asarray(reduced[index], dtype=np.float32)
        fitted = cluster_sample(backend, cfg, base, n)
        found = int(fitted.labels.max()) + 1
        progress.say(f"  {found} clusters in the sample; {100 * (fitted.labels < 0).mean():.1f}% noise")
    outliers = cfg.outliers == "assign"
    with progress.step("labelling every point" + (" (outliers to their nearest cluster)" if outliers else "")):
        labels, probs, outlier = label_all(
            backend,
            reduced,
            index,
            fitted.labels,
            fitted.probabilities,
            cfg.assign_neighbors,
            outliers,
            cfg.seed,
            progress,
        )
    return Labelled(relabel_by_size(labels), probs, outlier, index, fitted, pca, base, reduced)


def keep_ids(cfg: ClusterConfig, distinct: Distinct, result: Labelled, progress: Progress) -> None:
    """Give the clusters the ids of the previous run's (``clusterer.stable``), unless ``--renumber``."""
    if cfg.renumber:
        return
    previous = previous_labels(cfg.out / CLUSTERS_FILE, distinct)
    if previous is None:
        return
    with progress.step("matching clusters to the previous run's ids"):
        result.ids = match_ids(result.labels, previous)
        result.labels = result.ids.labels
        m = result.ids
        progress.say(
            f"  {m.kept} cluster(s) keep their previous id, {m.new} new; "
            f"{len(m.retired)} of the previous {m.previous_clusters} retired"
        )


def run(cfg: ClusterConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Cluster a run and write every result file; returns the summary."""
    cfg.validate()
    progress = progress or Progress()
    started = time.time()
    with progress.step("checking the run"):
        run_state = open_run(cfg, progress)
    parts = run_state.usable
    backend = select_backend(cfg.device)
    distinct = distinct_texts(cfg, parts, progress)
    if cfg.update:
        from clusterer.update import update

        updated = update(cfg, run_state, distinct, progress)
        if updated is not None:
            return finish(updated, cfg, started, progress)
    progress.say(
        f"clustering {distinct.texts:,} distinct texts on {backend.name}; "
        f"smallest cluster {run_min_cluster_size(cfg, distinct.texts):,} texts"
    )
    result = label_points(backend, cfg, parts, distinct, progress)
    keep_ids(cfg, distinct, result, progress)
    with progress.step("reading row keys"):
        keys = read_keys(parts)
    summary = write_results(cfg, backend, run_state, parts, keys, distinct, result, progress)
    return finish(summary, cfg, started, progress)


def finish(summary: dict[str, Any], cfg: ClusterConfig, started: float, progress: Progress) -> dict[str, Any]:
    summary["seconds"] = round(time.time() - started, 1)
    progress.say(
        f"{summary['clusters']} clusters, {100 * summary['noise_share']:.1f}% of rows unclustered; "
        f"report in {cfg.out / 'report.html'} ({summary['seconds']:.0f} s)"
    )
    return summary
