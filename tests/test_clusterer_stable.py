"""Stable cluster ids: a new fit matched to the previous run keeps its ids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.metrics import adjusted_rand_score

from clusterer.cli import main
from clusterer.stable import UNKNOWN, match_ids
from clusterer.synthetic import PlantedSpec, planted, texts_for, write_run


def test_permuted_clusters_keep_their_ids_and_new_ones_get_fresh_ids() -> None:
    previous = np.array([0, 0, 0, 1, 1, 1, 2, 2, -1, UNKNOWN, UNKNOWN])
    labels = np.array([5, 5, 5, 3, 3, 3, 4, -1, -1, 4, 9])
    m = match_ids(labels, previous)
    assert m.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, -1, -1, 2, 3]
    assert (m.kept, m.new, m.retired, m.previous_clusters) == (3, 1, [], 3)
    split = match_ids(np.array([0, 0, 1, 1, 2, 2]), np.array([0, 0, 0, 0, 1, 1]))
    assert split.labels.tolist() in ([0, 0, 2, 2, 1, 1], [2, 2, 0, 0, 1, 1]), "one of the halves keeps the id"
    gone = match_ids(np.array([0, 0, -1, -1]), np.array([0, 0, 1, 1]))
    assert gone.retired == [1] and gone.labels.tolist() == [0, 0, -1, -1]


def labels_by_id(out: Path) -> np.ndarray:
    df = pl.read_parquet(out / "clusters.parquet").sort(pl.col("id").str.slice(1).cast(pl.Int64))
    return df["cluster"].to_numpy()


def test_another_seed_keeps_the_same_clusters_ids(tmp_path: Path) -> None:
    x, labels = planted(PlantedSpec(n=4000, clusters=8, seed=8, noise_share=0.03))
    write_run(tmp_path, x, texts_for(labels, 8), files=3)
    common = ["--data-root", str(tmp_path), "--sample-size", "1500", "--min-cluster-size", "60", "--map-points", "0"]
    assert main([*common, "--seed", "0", "-q"]) == 0
    first = labels_by_id(tmp_path / "clusters")
    assert main([*common, "--seed", "1", "--out", str(tmp_path / "fresh"), "--renumber", "-q"]) == 0
    assert main([*common, "--seed", "1", "-q"]) == 0
    second = labels_by_id(tmp_path / "clusters")
    both = (first >= 0) & (second >= 0)
    assert both.mean() > 0.9
    assert adjusted_rand_score(first[both], second[both]) >= 0.9
    kept = float(np.mean(first[both] == second[both]))
    assert kept >= 0.9, f"only {kept:.1%} of the texts kept their cluster id"
    summary = json.loads((tmp_path / "clusters" / "clusters_summary.json").read_text())
    assert summary["ids"]["kept"] >= 0.9 * summary["clusters"]
    assert "kept their id" in (tmp_path / "clusters" / "report.md").read_text()
    fresh = json.loads((tmp_path / "fresh" / "clusters_summary.json").read_text())
    assert fresh["ids"] is None
