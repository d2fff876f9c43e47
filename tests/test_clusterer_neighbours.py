"""Texts like this one: the neighbour index saved with the clustering, its
recall against exact search, and ``python -m clusterer neighbours``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from clusterer.ann import INDEX_FILE, TEXTS_FILE, IndexBuilder, cells_for, search
from clusterer.cli import main
from clusterer.synthetic import PlantedSpec, planted, texts_for, write_run

FAST = ["--reducer", "pca", "--map-points", "0", "-q"]


def build(x: np.ndarray, batch: int = 4096) -> object:
    builder = IndexBuilder(len(x), x.shape[1], seed=0)
    for lo in range(0, len(x), batch):
        builder.offer(lo, x[lo : lo + batch])
    builder.train()
    for lo in range(0, len(x), batch):
        builder.add(lo, x[lo : lo + batch])
    return builder.index


def test_recall_at_10_against_exact_search() -> None:
    x, _ = planted(PlantedSpec(n=30_000, clusters=60, seed=2, spread=1.0))
    rng = np.random.default_rng(1)
    q = x[rng.choice(len(x), 300, replace=False)] + 0.05 * rng.standard_normal((300, 384)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    exact = np.argsort(-(q @ x.T), axis=1)[:, :10]
    ids, sims = search(build(x), q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact, strict=True)])
    assert recall >= 0.95, f"recall@10 {recall:.3f}"
    assert np.all(np.diff(sims, axis=1) <= 1e-4), "nearest first"
    assert cells_for(100) == 2 and cells_for(1_000_000) == 4096


def run_with_index(root: Path) -> tuple[np.ndarray, pl.DataFrame]:
    x, labels = planted(PlantedSpec(n=2000, clusters=5, seed=3, noise_share=0.0))
    write_run(root, x, texts_for(labels, 3), files=2)
    assert main(["--data-root", str(root), *FAST]) == 0
    return labels, pl.read_parquet(root / "clusters" / "clusters.parquet")


def test_like_a_row_lists_texts_of_its_cluster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, df = run_with_index(tmp_path)
    out = tmp_path / "clusters"
    assert (out / INDEX_FILE).is_file() and (out / TEXTS_FILE).is_file()
    texts = pl.read_parquet(out / TEXTS_FILE)
    assert texts.height == df["text_key"].n_unique(), "one entry per distinct text"
    start = df.filter(pl.col("multiplicity") == 1).row(0, named=True)
    like = f"{start['input_path']}:{start['row']}"
    assert main(["neighbours", "--like", like, "--data-root", str(tmp_path), "-k", "5", "--json"]) == 0
    found = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(found) == 5 and [r["rank"] for r in found] == [1, 2, 3, 4, 5]
    assert all(r["text"] for r in found) and all(r["cluster"] == start["cluster"] for r in found)
    assert (start["input_path"], start["row"]) not in {(r["input_path"], r["row"]) for r in found}
    assert found[0]["cosine"] >= found[-1]["cosine"]
    capsys.readouterr()
    assert main(["neighbours", "--like", like, "--data-root", str(tmp_path), "-k", "2"]) == 0
    assert f"cluster {start['cluster']:>4}" in capsys.readouterr().out


def test_missing_rows_and_indexes_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_with_index(tmp_path)
    assert main(["neighbours", "--like", "chains/nope.parquet:3", "--data-root", str(tmp_path)]) == 4
    assert "not in" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["neighbours", "--data-root", str(tmp_path)])
    assert main(["neighbours", "--like", "a:1", "--data-root", str(tmp_path / "elsewhere")]) == 4
    assert "make cluster" in capsys.readouterr().err


@pytest.mark.slow
def test_a_text_finds_itself_and_its_paraphrase_with_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from workers.st_embedder import SentenceTransformerEmbedder

    texts = [f"{a} {b}" for a in ("My cat", "The rocket", "Our soup", "This guitar") for b in TAILS]
    texts.append("How do I keep my kitten from scratching the sofa?")
    x = SentenceTransformerEmbedder(device="cpu", precision="fp32").encode(texts).embeddings.astype(np.float32)
    write_run(tmp_path, x, texts, files=2)
    assert main(["--data-root", str(tmp_path), "--min-cluster-size", "5", *FAST]) == 0
    query = "my kitten keeps scratching the couch, how can I stop it?"
    assert main(["neighbours", query, "--data-root", str(tmp_path), "-k", "3", "--json"]) == 0
    found = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert found[0]["text"] == texts[-1], found


TAILS = [
    "is sleeping on the keyboard again",
    "needs a new coat of paint",
    "was better than I expected",
    "launched right on schedule",
    "is too salty for me",
    "sounds amazing with new strings",
    "broke after two days",
    "made the whole room smell great",
    "keeps me up at night",
    "was on the news today",
]
