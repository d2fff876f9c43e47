"""``--update``: new outputs labelled with the last fit, earlier rows untouched,
a refit when too many new texts fall outside every cluster."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.metrics import adjusted_rand_score

from clusterer.cli import main
from clusterer.synthetic import PlantedSpec, add_output, planted, texts_for, write_run

ARGS = ["--reducer", "pca", "--min-cluster-size", "60", "--map-points", "500", "-q"]


def truth_of(df: pl.DataFrame, labels: np.ndarray) -> np.ndarray:
    return labels[df["id"].str.slice(1).cast(pl.Int64).to_numpy()]


def test_update_labels_new_outputs_and_keeps_every_earlier_row(tmp_path: Path) -> None:
    x, labels = planted(PlantedSpec(n=4400, clusters=6, seed=9, noise_share=0.02))
    texts = texts_for(labels, 9)
    cut = 4000
    write_run(tmp_path, x[:cut], texts[:cut], files=3)
    assert main(["--data-root", str(tmp_path), *ARGS]) == 0
    out = tmp_path / "clusters"
    before = pl.read_parquet(out / "clusters.parquet")
    assert (out / "clusters_model.npz").is_file() and (out / "clusters_map.parquet").is_file()

    add_output(tmp_path, "chains/synthetic/sub1/part-0100.parquet", x[cut:], texts[cut:], first_id=cut)
    assert main(["--data-root", str(tmp_path), "--update", *ARGS]) == 0
    after = pl.read_parquet(out / "clusters.parquet")
    assert after.height == len(x)
    kept = before.join(after, on=["input_path", "row"], suffix="_now")
    assert kept.height == before.height
    for col in ("cluster", "level1", "level2", "probability", "outlier"):
        assert (kept[col] == kept[f"{col}_now"]).all(), f"every earlier row keeps its {col}"
    new = after.filter(pl.col("input_path").str.contains("part-0100"))
    assert new.height == len(x) - cut
    assert adjusted_rand_score(truth_of(new, labels), new["cluster"].to_numpy()) >= 0.9
    summary = json.loads((out / "clusters_summary.json").read_text())
    update = summary["update"]
    assert update["new_texts"] == len(set(texts[cut:]) - set(texts[:cut])) > 0, "texts seen before are not new"
    assert update["outside_share"] <= 0.1
    assert summary["points"] == len(x) and summary["parameters"]["reducer"] == "pca"
    assert "**Update**" in (out / "report.md").read_text()
    assert summary["map_points"]["shown"] > 0, "the map keeps its layout"
    index = pl.read_parquet(out / "neighbours.parquet")
    assert index.height == after["text_key"].n_unique(), "the new texts joined the neighbour index"
    assert index["text_key"].is_unique().all()


def test_update_refits_when_the_new_data_is_elsewhere(tmp_path: Path, capsys: object) -> None:
    x, labels = planted(PlantedSpec(n=3000, clusters=4, seed=10, noise_share=0.02))
    write_run(tmp_path, x, texts_for(labels, 10), files=2)
    assert main(["--data-root", str(tmp_path), *ARGS]) == 0
    other, other_labels = planted(PlantedSpec(n=1500, clusters=3, seed=11, noise_share=0.0))
    add_output(tmp_path, "chains/synthetic/sub2/part-0200.parquet", other, texts_for(other_labels, 11), 10_000)
    assert main(["--data-root", str(tmp_path), "--update", *ARGS]) == 0
    summary = json.loads((tmp_path / "clusters" / "clusters_summary.json").read_text())
    assert summary["update"] is None, "a refit"
    assert summary["ids"]["kept"] >= 4, "the earlier clusters keep their ids through the refit"
    assert summary["clusters"] >= 6


def test_update_without_an_earlier_fit_fits(tmp_path: Path) -> None:
    x, labels = planted(PlantedSpec(n=1500, clusters=3, seed=12, noise_share=0.0))
    write_run(tmp_path, x, texts_for(labels, 12), files=2)
    assert main(["--data-root", str(tmp_path), "--update", *ARGS]) == 0
    assert json.loads((tmp_path / "clusters" / "clusters_summary.json").read_text())["clusters"] >= 3
