"""The topic tree: clusters merged into topics and themes by their centroids,
nested, named and sized, in clusters.parquet and both reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from clusterer.cli import main
from clusterer.synthetic import PlantedSpec, planted, texts_for, write_run
from clusterer.tree import build_tree, topic_counts

FAST = ["--reducer", "pca", "--map-points", "0", "-q"]


def grouped_centres(groups: int, per_group: int, dim: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    heads = rng.standard_normal((groups, dim))
    which = np.repeat(np.arange(groups), per_group)
    centres = heads[which] + 0.3 * rng.standard_normal((len(which), dim))
    return (centres / np.linalg.norm(centres, axis=1, keepdims=True)).astype(np.float32), which


def test_topic_counts_give_two_levels_above_the_clusters() -> None:
    assert topic_counts(1) == (1, 1) and topic_counts(4) == (1, 2)
    assert topic_counts(9) == (2, 3) and topic_counts(100) == (3, 10) and topic_counts(200) == (4, 14)


def test_tree_merges_clusters_of_one_subject_and_nests() -> None:
    centres, subject = grouped_centres(groups=3, per_group=4)
    k = len(centres)
    rows = np.arange(k, 0, -1) * 10
    texts = np.arange(k, 0, -1) * 5
    subjects = ["alpha", "beta", "gamma"]
    docs = {c: [(f"{subjects[subject[c]]} filler", 1)] for c in range(k)}
    tree = build_tree(list(range(k)), centres, rows, texts, docs, top_words=3)
    level2 = tree.of_cluster["level2"]
    assert len(set(level2.tolist())) == 3
    for g in range(3):
        assert len(set(level2[subject == g].tolist())) == 1, "one subject, one topic"
    level1 = tree.of_cluster["level1"]
    for t in set(level2.tolist()):
        assert len(set(level1[level2 == t].tolist())) == 1, "every topic has one theme"
    for node in tree.nodes:
        members = np.array(node.clusters)
        assert node.rows == rows[members].sum() and node.texts == texts[members].sum()
        assert node.keywords[0][0] in subjects, "named by what its clusters share against the others"
    themes = tree.level(1)
    assert [n.id for n in themes] == list(range(len(themes))) and themes[0].texts >= themes[-1].texts
    labels = np.array([-1, 0, 5])
    assert tree.per_label("level2", labels).tolist() == [-1, int(level2[0]), int(level2[5])]


def test_tree_levels_are_in_clusters_parquet_and_both_reports(tmp_path: Path) -> None:
    x, labels = planted(PlantedSpec(n=2400, clusters=12, group_size=4, seed=5, noise_share=0.02))
    write_run(tmp_path, x, texts_for(labels, 5), files=3)
    assert main(["--data-root", str(tmp_path), "--min-cluster-size", "40", *FAST]) == 0
    out = tmp_path / "clusters"
    summary = json.loads((out / "clusters_summary.json").read_text())
    df = pl.read_parquet(out / "clusters.parquet")
    pairs = df.filter(pl.col("cluster") >= 0).select("cluster", "level1", "level2").unique()
    assert pairs["cluster"].is_unique().all(), "a cluster has one topic and one theme"
    assert pairs.group_by("level2").agg(pl.col("level1").n_unique())["level1"].max() == 1
    nodes = summary["topic_tree"]["nodes"]
    assert {n["level"] for n in nodes} == {1, 2}
    assert sum(n["rows"] for n in nodes if n["level"] == 1) == df.filter(pl.col("cluster") >= 0).height
    for c in summary["cluster_list"]:
        row = pairs.filter(pl.col("cluster") == c["id"])
        assert (row["level1"].item(), row["level2"].item()) == (c["level1"], c["level2"])
    assert all(n["keywords"] for n in nodes)
    md = (out / "report.md").read_text()
    tree_md = md.split("## Topic tree")[1].split("| cluster |")[0]
    assert tree_md.count("- **Theme ") == sum(n["level"] == 1 for n in nodes)
    assert tree_md.count("  - **Topic ") == sum(n["level"] == 2 for n in nodes)
    assert tree_md.count("    - [Cluster ") == summary["clusters"]
    page = (out / "report.html").read_text()
    assert page.count("<li class=leaf data-cluster=") == summary["clusters"]
    assert page.count('<summary data-node="1:') == sum(n["level"] == 1 for n in nodes)
