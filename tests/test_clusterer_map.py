"""The map's points and map.png: a stratified sample that shows every
cluster, labels that never overlap and never say nothing, and page data that
cannot break out of its element."""

from __future__ import annotations

import json
import warnings
from itertools import combinations
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

from clusterer.cli import main
from clusterer.glyphs import PLACEHOLDER, MapFonts, map_fonts
from clusterer.mapview import MapPoints, inline_json, page_data, stratified_sample
from clusterer.plot import LABEL_CHARS, draw_map
from clusterer.synthetic import PlantedSpec, planted, texts_for, write_run


def test_stratified_sample_keeps_every_cluster_in_proportion() -> None:
    labels = np.r_[np.zeros(90_000, int), np.ones(9_000, int), np.full(20, 2), np.full(1_000, -1)]
    pick = stratified_sample(labels, 10_000, seed=0)
    counts = np.bincount(labels[pick] + 1)
    assert counts.tolist()[2:] == [899, 20], "proportional, and all of a small cluster"
    assert counts[0] >= 30 and abs(len(pick) - 10_000) <= 100
    assert np.all(np.diff(pick) > 0)
    assert len(stratified_sample(labels[:500], 1_000, seed=0)) == 500


def test_map_labels_never_overlap_and_always_name_their_cluster(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    k = 70
    centres = rng.uniform(0, 10, (k, 2))
    centres[:30] = rng.uniform(4, 5, (30, 2))  # a crowded middle: labels must move or give way
    labels = np.repeat(np.arange(k), 40)
    xy = (centres[labels] + rng.normal(0, 0.05, (len(labels), 2))).astype(np.float32)
    names = {c: ("a very long keyword that goes on and on" if c % 3 == 0 else f"word{c}") for c in range(k)}
    names[5] = ""
    boxes = draw_map(tmp_path / "map.png", xy, labels, names, "test map")
    assert 10 <= len(boxes) < k
    for a, b in combinations(boxes, 2):
        assert not a.overlaps(b), f"{a.text!r} overlaps {b.text!r}"
    width, height = Image.open(tmp_path / "map.png").size
    for box in boxes:
        cluster, _, name = box.text.partition(": ")
        assert cluster.isdigit() and name.strip(), f"label {box.text!r} names its cluster"
        assert len(box.text) <= LABEL_CHARS
        assert 0 <= box.x0 < box.x1 <= width and 0 <= box.y0 < box.y1 <= height


def test_page_data_is_scaled_and_safe_inline() -> None:
    points = MapPoints(np.array([0, 2]), np.array([[0.0, 5.0], [2.0, 7.0]], np.float32), np.array([1, -1]), 3)
    data = page_data(points, {0: "</script><b>x</b> & y", 2: "z " * 500}, np.array([4, 1, 1]))
    assert data["x"] == [0.0, 1000.0] and data["y"] == [0.0, 1000.0] and data["m"] == [4, 1]
    assert len(data["t"][1]) <= 240 and data["stratified"] is True
    raw = inline_json(data)
    assert "<" not in raw and ">" not in raw and "&" not in raw
    assert json.loads(raw)["t"][0] == "</script><b>x</b> & y"


def test_a_run_draws_every_cluster_on_the_map(tmp_path: Path) -> None:
    x, labels = planted(PlantedSpec(n=3000, clusters=8, seed=6, noise_share=0.02))
    write_run(tmp_path, x, texts_for(labels, 6), files=2)
    args = ["--data-root", str(tmp_path), "--reducer", "pca", "--map-points", "600", "--min-cluster-size", "40"]
    assert main([*args, "-q"]) == 0
    summary = json.loads((tmp_path / "clusters" / "clusters_summary.json").read_text())
    shown = summary["map_points"]
    assert shown["stratified"] is True and shown["total"] == summary["texts"] and shown["shown"] <= 600 + 30 * 9
    assert shown["labelled"] == summary["clusters"], "eight clusters all fit"
    page = (tmp_path / "clusters" / "report.html").read_text()
    data = json.loads(page.split("id=report-data>")[1].split("</script>")[0])
    found = set(data["points"]["c"])
    assert set(pl.read_parquet(tmp_path / "clusters" / "clusters.parquet")["cluster"].unique()) <= found
    assert "stratified sample" in page


def test_map_with_japanese_and_emoji_labels_warns_of_no_missing_glyph(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    names = {0: "東京タワー", 1: "😂", 2: "👍🏽", 3: "café ✨ 東京", 4: "\u200d\ufe0f", 5: "$5 and $6"}
    labels = np.repeat(np.arange(len(names)), 30)
    xy = np.array([[0, 0], [10, 0], [0, 10], [10, 10], [5, 5], [5, 0]])[labels] + rng.normal(0, 0.3, (len(labels), 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        boxes = draw_map(tmp_path / "map.png", xy.astype(np.float32), labels, names, "地図 🗺 map")
    assert len(boxes) == len(names)
    fonts = map_fonts()
    for box in boxes:
        cluster, _, name = box.text.partition(": ")
        assert cluster.isdigit() and name.strip(), f"label {box.text!r} names its cluster"
        assert all(ord(ch) in fonts.codepoints for ch in box.text), f"{box.text!r} holds a glyph no font has"
    shown = {box.text.partition(": ")[0]: box.text.partition(": ")[2] for box in boxes}
    assert shown["4"] == "cluster 4", "nothing drawable left: the cluster's own name"
    assert shown["5"] == "$5 and $6"


def test_characters_no_font_has_are_named_or_replaced() -> None:
    fonts = MapFonts(("DejaVu Sans",), frozenset(map(ord, "abc :")))
    assert fonts.drawable("abc 😂") == "abc :face with tears of joy:"
    assert fonts.drawable("a東b") == f"a{PLACEHOLDER}b"
    assert fonts.drawable("👍🏽\u200d\ufe0f") == ":thumbs up sign:"
    assert fonts.drawable("a\tb") == "a b"
    cjk = MapFonts(("DejaVu Sans", "Noto Sans CJK JP"), frozenset(map(ord, "東京")))
    assert cjk.drawable("東京") == "東京", "a CJK font, when installed, draws CJK itself"
