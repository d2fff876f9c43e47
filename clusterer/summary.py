"""The summary of a run (``clusters_summary.json``): counts in rows and in
distinct texts, parameters, completeness, and per cluster and topic its
sizes, keywords and representative texts. The reports are rendered from it
alone (``clusterer.report``)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from clusterer.backend import Backend
from clusterer.completeness import Completeness
from clusterer.config import ClusterConfig
from clusterer.describe import Described, Outcome
from clusterer.distinct import Distinct
from clusterer.fit import run_min_cluster_size
from clusterer.tree import TopicTree

if TYPE_CHECKING:
    from clusterer.pipeline import Labelled

SUMMARY_VERSION = 3
"""2: counts in rows and in distinct texts (``texts``, per cluster ``rows``
and ``texts`` in place of ``size``), ``identity``. 3: ``failed_inputs``,
``keywords_from``, the ``topic_tree`` and each cluster's ``level1`` and
``level2`` topics, ``map_points``."""
MAX_LISTED_PROBLEMS = 200


def identity(distinct: Distinct) -> dict[str, Any]:
    """How rows were grouped into texts (for the summary and the report)."""
    by_vector = ~distinct.by_text
    return {
        "rows_by_text_key": int(distinct.multiplicity[distinct.by_text].sum()),
        "rows_by_vector": int(distinct.multiplicity[by_vector].sum()),
        "texts_by_vector": int(by_vector.sum()),
        "unreadable_inputs": distinct.unreadable[:MAX_LISTED_PROBLEMS],
    }


def parameters(cfg: ClusterConfig, backend: Backend, result: Labelled, texts: int) -> dict[str, Any]:
    """How a fit was made (the summary's ``parameters``)."""
    return {
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
    }


def summarise(
    run_state: Completeness,
    distinct: Distinct,
    outcome: Outcome,
    described: Described,
    tree: TopicTree,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The summary; ``extra`` brings ``parameters``, ``map``, ``map_points``, ``ids``, ``timings``
    (and ``update`` for an update)."""
    n, texts = distinct.rows, distinct.texts
    profiles = described.profiles
    level1, level2 = tree.of_cluster["level1"], tree.of_cluster["level2"]
    noise_text = outcome.labels < 0
    noise = int(distinct.multiplicity[noise_text].sum())
    outlier_rows = int(distinct.multiplicity[outcome.outlier].sum())
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
        "failed_inputs": [p.to_dict() for p in run_state.failed[:MAX_LISTED_PROBLEMS]],
        "failed_count": len(run_state.failed),
        "dead_jobs": run_state.dead_jobs,
        "queued_jobs": run_state.queued_jobs,
        "ignored_outputs": run_state.ignored[:MAX_LISTED_PROBLEMS],
        "clusters": len(profiles),
        "noise": noise,
        "noise_texts": int(noise_text.sum()),
        "noise_share": round(noise / max(n, 1), 6),
        "outliers": outlier_rows,
        "outliers_texts": int(outcome.outlier.sum()),
        "outliers_share": round(outlier_rows / max(n, 1), 6),
        "map": None,
        "map_points": None,
        "ids": None,
        "update": None,
        **extra,
        "cluster_list": [
            {
                "id": p.cluster,
                "rows": p.rows,
                "texts": p.texts,
                "share": round(p.rows / max(n, 1), 6),
                "text_share": round(p.texts / max(texts, 1), 6),
                "mean_probability": p.mean_probability,
                "keywords": p.keywords,
                "keywords_from": p.keywords_from,
                "level1": int(level1[p.cluster]),
                "level2": int(level2[p.cluster]),
                "representatives": p.representatives,
            }
            for p in profiles
        ],
        "topic_tree": tree.to_dict(),
        "unclustered": {"rows": noise, "texts": int(noise_text.sum()), "keywords": described.noise_words},
    }
