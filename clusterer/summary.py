"""Step 7: write ``clusters.parquet`` (every row with the label of its text),
describe the clusters, draw the map, and write the summary JSON and the
Markdown and HTML reports. Clusters are counted both in rows and in
distinct texts."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from clusterer import outputs
from clusterer.backend import Backend
from clusterer.catalog import EmbeddingPart
from clusterer.completeness import Completeness
from clusterer.config import ClusterConfig
from clusterer.distinct import Distinct
from clusterer.fit import run_min_cluster_size
from clusterer.plot import draw_map, layout
from clusterer.profiles import (
    CANDIDATES_PER_REPRESENTATIVE,
    KEYWORD_DOCS,
    ClusterProfile,
    build_profiles,
    centroid_similarity,
    keyword_sample,
    representative_candidates,
)
from clusterer.progress import Progress
from clusterer.report import render_html, render_markdown
from clusterer.texts import fetch_texts

if TYPE_CHECKING:
    from clusterer.pipeline import Labelled

SUMMARY_VERSION = 2
"""2: counts in rows and in distinct texts (``texts``, per cluster ``rows``
and ``texts`` in place of ``size``), ``identity``."""
MAX_LISTED_PROBLEMS = 200


def texts_needed(
    keys: pl.DataFrame, distinct: Distinct, labels: np.ndarray, sims: np.ndarray, cfg: ClusterConfig
) -> pl.DataFrame:
    """Row keys (with their distinct text's ``index``) of the keyword sample and the candidates."""
    wanted = np.union1d(
        keyword_sample(labels, KEYWORD_DOCS, cfg.seed),
        representative_candidates(labels, sims, cfg.representatives * CANDIDATES_PER_REPRESENTATIVE),
    )
    return keys[distinct.first_row[wanted]].with_columns(index=pl.Series(wanted))


def describe_clusters(
    cfg: ClusterConfig,
    parts: list[EmbeddingPart],
    keys: pl.DataFrame,
    distinct: Distinct,
    result: Labelled,
    progress: Progress,
) -> tuple[list[ClusterProfile], list[tuple[str, float]]]:
    with progress.step("centroids and representatives"):
        core = np.where(result.outlier, -1, result.labels)
        sims = centroid_similarity(parts, core, distinct.first_row, progress)
    with progress.step("joining texts"):
        wanted = texts_needed(keys, distinct, result.labels, sims, cfg)
        texts = fetch_texts(cfg.input_root, wanted, cfg.text_column, progress)
    with progress.step("keywords (c-TF-IDF)"):
        return build_profiles(
            result.labels, result.probabilities, distinct.multiplicity, sims, texts, cfg.top_words, cfg.representatives
        )


def draw(
    cfg: ClusterConfig, backend: Backend, distinct: Distinct, result: Labelled, profiles: list[ClusterProfile]
) -> str | None:
    """Draw ``map.png`` from (part of) the sample of distinct texts; returns its file name."""
    if cfg.map_points <= 0:
        return None
    pick = np.random.default_rng(cfg.seed).permutation(len(result.sample_index))[: cfg.map_points]
    xy = layout(backend, result.sample_reduced[pick], cfg.reducer != "pca", cfg.seed)
    names = {p.cluster: (p.keywords[0][0] if p.keywords else "") for p in profiles}
    title = (
        f"{len(profiles)} clusters of {distinct.texts:,} distinct texts "
        f"({distinct.rows:,} rows; {len(pick):,} texts shown)"
    )
    draw_map(cfg.out / outputs.MAP_FILE, xy, result.labels[result.sample_index[pick]], names, title)
    return outputs.MAP_FILE


def identity(distinct: Distinct) -> dict[str, Any]:
    """How rows were grouped into texts (for the summary and the report)."""
    by_vector = ~distinct.by_text
    return {
        "rows_by_text_key": int(distinct.multiplicity[distinct.by_text].sum()),
        "rows_by_vector": int(distinct.multiplicity[by_vector].sum()),
        "texts_by_vector": int(by_vector.sum()),
        "unreadable_inputs": distinct.unreadable[:MAX_LISTED_PROBLEMS],
    }


def summarise(
    cfg: ClusterConfig,
    backend: Backend,
    run_state: Completeness,
    distinct: Distinct,
    result: Labelled,
    profiles: list[ClusterProfile],
    noise_words: list[tuple[str, float]],
    map_file: str | None,
    timings: dict[str, float],
) -> dict[str, Any]:
    n, texts = distinct.rows, distinct.texts
    noise_text = result.labels < 0
    noise = int(distinct.multiplicity[noise_text].sum())
    outlier_rows = int(distinct.multiplicity[result.outlier].sum())
    return {
        "version": SUMMARY_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model": run_state.model,
        "points": n,
        "texts": texts,
        "identity": identity(distinct),
        "outputs": len(run_state.usable),
        "inputs": run_state.inputs,
        "complete": run_state.complete,
        "missing": run_state.missing[:MAX_LISTED_PROBLEMS],
        "queued_jobs": run_state.queued_jobs,
        "ignored_outputs": run_state.ignored[:MAX_LISTED_PROBLEMS],
        "clusters": len(profiles),
        "noise": noise,
        "noise_texts": int(noise_text.sum()),
        "noise_share": round(noise / max(n, 1), 6),
        "outliers": outlier_rows,
        "outliers_texts": int(result.outlier.sum()),
        "outliers_share": round(outlier_rows / max(n, 1), 6),
        "parameters": {
            "reducer": cfg.reducer,
            "pca_dims": result.pca.dims,
            "pca_kept_variance": round(result.pca.kept_variance, 4),
            "dims": int(result.sample.points.shape[1]),
            "sample": len(result.sample_index),
            "min_cluster_size": run_min_cluster_size(cfg, texts),
            "sample_min_cluster_size": result.sample.min_cluster_size,
            "min_samples": result.sample.min_samples,
            "selection": cfg.selection,
            "outliers": cfg.outliers,
            "assign_neighbors": cfg.assign_neighbors,
            "seed": cfg.seed,
            "backend": backend.name,
        },
        "timings": timings,
        "map": map_file,
        "cluster_list": [
            {
                "id": p.cluster,
                "rows": p.rows,
                "texts": p.texts,
                "share": round(p.rows / max(n, 1), 6),
                "text_share": round(p.texts / max(texts, 1), 6),
                "mean_probability": p.mean_probability,
                "keywords": p.keywords,
                "representatives": p.representatives,
            }
            for p in profiles
        ],
        "unclustered": {"rows": noise, "texts": int(noise_text.sum()), "keywords": noise_words},
    }


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
    """Every result file under ``cfg.out``; returns the summary."""
    cfg.out.mkdir(parents=True, exist_ok=True)
    with progress.step("writing clusters.parquet"):
        outputs.write_clusters(
            cfg.out / outputs.CLUSTERS_FILE,
            keys.with_columns(distinct.text_key_hex(), multiplicity=pl.Series(distinct.per_row(distinct.multiplicity))),
            distinct.per_row(result.labels),
            distinct.per_row(result.probabilities),
            distinct.per_row(result.outlier),
        )
    profiles, noise_words = describe_clusters(cfg, parts, keys, distinct, result, progress)
    with progress.step("drawing the map"):
        map_file = draw(cfg, backend, distinct, result, profiles)
    summary = summarise(
        cfg, backend, run_state, distinct, result, profiles, noise_words, map_file, dict(progress.timings)
    )
    outputs.write_summary(cfg.out / outputs.SUMMARY_FILE, summary)
    outputs.write_text(cfg.out / outputs.REPORT_MD, render_markdown(summary))
    outputs.write_text(cfg.out / outputs.REPORT_HTML, render_html(summary))
    return summary
