"""End-to-end clustering of planted clusters written as a finished embedding
run: labels recovered, every result file produced and readable."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import adjusted_rand_score

from clusterer.cli import main
from clusterer.synthetic import PlantedSpec, planted, texts_for, vocabulary, write_run

FAST = ["--reducer", "pca", "--map-points", "0", "-q"]


def make_run(root: Path, n: int = 3000, clusters: int = 6, files: int = 3, seed: int = 0) -> np.ndarray:
    """A planted run under ``root`` (both roots); returns the true labels by point index."""
    x, labels = planted(PlantedSpec(n=n, clusters=clusters, seed=seed, noise_share=0.03))
    write_run(root, x, texts_for(labels, seed), files=files)
    return labels


def labels_by_index(out: Path, n: int) -> np.ndarray:
    df = pl.read_parquet(out / "clusters.parquet")
    labels = np.full(n, -2)
    labels[df["id"].str.slice(1).cast(pl.Int64).to_numpy()] = df["cluster"].to_numpy()
    return labels


def test_planted_clusters_recovered_with_pca_and_sampling(tmp_path: Path) -> None:
    truth = make_run(tmp_path)
    assert main(["--data-root", str(tmp_path), "--sample-size", "1000", "--min-cluster-size", "60", *FAST]) == 0
    found = labels_by_index(tmp_path / "clusters", len(truth))
    assert (found > -2).all(), "every point gets a row"
    assert adjusted_rand_score(truth, found) >= 0.9


def test_planted_clusters_recovered_by_the_default_pipeline(tmp_path: Path) -> None:
    truth = make_run(tmp_path, n=2500, clusters=5, seed=1)
    args = ["--data-root", str(tmp_path), "--sample-size", "1200", "--min-cluster-size", "60", "--map-points", "0"]
    assert main([*args, "-q"]) == 0
    summary = json.loads((tmp_path / "clusters" / "clusters_summary.json").read_text())
    assert summary["parameters"]["reducer"] == "pca+umap"
    assert adjusted_rand_score(truth, labels_by_index(tmp_path / "clusters", len(truth))) >= 0.9


def test_clusters_parquet_has_the_row_key_cluster_and_probability(tmp_path: Path) -> None:
    truth = make_run(tmp_path, n=1200, clusters=4)
    assert main(["--data-root", str(tmp_path), "--out", str(tmp_path / "res"), *FAST]) == 0
    df = pl.read_parquet(tmp_path / "res" / "clusters.parquet")
    assert df.columns == [
        "input_path",
        "row",
        "id",
        "text_key",
        "multiplicity",
        "cluster",
        "level1",
        "level2",
        "probability",
        "outlier",
        "similarity",
    ]
    assert df.height == len(truth)
    assert df.select(pl.struct("input_path", "row").is_unique().all()).item()
    assert df["input_path"].str.starts_with("chains/").all()
    assert df["probability"].is_between(0.0, 1.0).all()
    assert (df.filter(pl.col("cluster") < 0)["probability"] == 0).all()
    assert ((df["cluster"] < 0) == (df["level1"] < 0)).all() and ((df["cluster"] < 0) == (df["level2"] < 0)).all()
    core = df.filter((pl.col("cluster") >= 0) & ~pl.col("outlier"))
    assert core["similarity"].is_between(-1.0, 1.0).all() and df.filter(pl.col("outlier"))["similarity"].is_nan().all()


def test_keeping_outliers_leaves_them_unclustered(tmp_path: Path) -> None:
    make_run(tmp_path, n=1200, clusters=4)
    common = ["--data-root", str(tmp_path), "--min-samples", "25", *FAST]
    assert main([*common, "--outliers", "keep", "--out", str(tmp_path / "keep")]) == 0
    assert main([*common, "--out", str(tmp_path / "assign")]) == 0
    keep = pl.read_parquet(tmp_path / "keep" / "clusters.parquet")
    assign = pl.read_parquet(tmp_path / "assign" / "clusters.parquet")
    assert keep["outlier"].sum() > 0, "this data leaves some points as noise"
    assert (keep["outlier"] == (keep["cluster"] == -1)).all()
    assert (assign["cluster"] >= 0).all()
    assert assign["outlier"].sum() == keep["outlier"].sum()


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_report_names_each_cluster_with_its_keywords_and_texts(tmp_path: Path) -> None:
    truth = make_run(tmp_path, n=1500, clusters=4)
    out = tmp_path / "clusters"
    assert main(["--data-root", str(tmp_path), "--reducer", "pca", "--map-points", "800", "-q"]) == 0
    summary = json.loads((out / "clusters_summary.json").read_text())
    assert summary["points"] == len(truth)
    assert sum(c["rows"] for c in summary["cluster_list"]) + summary["noise"] == len(truth)
    vocab = [set(v) for v in vocabulary(4)]
    topics_named = set()
    for c in summary["cluster_list"]:
        words = {w for w, _ in c["keywords"][:5]}
        named = [i for i, v in enumerate(vocab) if len(words & v) >= 4]
        background = all(len(w) == 2 for w in words)  # the planted noise texts use two-letter words
        assert named or background, f"cluster {c['id']} keywords {words} match no planted topic"
        topics_named.update(named)
        assert c["representatives"], "each cluster shows texts"
        assert all(r["text"] for r in c["representatives"])
    assert topics_named == {0, 1, 2, 3}
    md = (out / "report.md").read_text()
    assert "| cluster | theme | topic | rows | share | distinct texts | top keywords |" in md
    assert md.count("## Cluster ") == summary["clusters"]
    page = _Collector()
    page.feed((out / "report.html").read_text())
    assert page.tags.count("h2") == summary["clusters"] + 2, "clusters, the topic tree and the unclustered"
    assert "canvas" in page.tags and "img" not in page.tags, "the interactive map, no image to load"
    assert (out / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_escapes_texts(tmp_path: Path) -> None:
    x, labels = planted(PlantedSpec(n=600, clusters=2, seed=2, noise_share=0.0))
    texts = [f"<script>alert({i})</script> | *bold* {t}" for i, t in enumerate(texts_for(labels, 2))]
    write_run(tmp_path, x, texts, files=2)
    assert main(["--data-root", str(tmp_path), *FAST]) == 0
    html_text = (tmp_path / "clusters" / "report.html").read_text()
    assert "<script>alert(" not in html_text and "&lt;script&gt;alert(" in html_text
    assert "\\u003cscript\\u003ealert(" in html_text, "texts in the page's JSON cannot close its element"
    assert "\\<script\\>" in (tmp_path / "clusters" / "report.md").read_text()


def test_float16_storage_and_leaf_selection_still_cluster(tmp_path: Path) -> None:
    truth = make_run(tmp_path, n=1500, clusters=4, seed=3)
    args = ["--data-root", str(tmp_path), "--dtype", "float16", "--selection", "leaf", "--sample-size", "700", *FAST]
    assert main(args) == 0
    assert adjusted_rand_score(truth, labels_by_index(tmp_path / "clusters", len(truth))) >= 0.8


@pytest.mark.parametrize("bad", [["--reducer", "tsne"], ["--sample-size", "0"], ["--min-cluster-size", "1"]])
def test_bad_arguments_exit_2(tmp_path: Path, bad: list[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--data-root", str(tmp_path), *bad])
    assert e.value.code == 2
