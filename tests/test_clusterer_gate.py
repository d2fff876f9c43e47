"""The completeness gate: an incomplete run is refused with what is missing,
a partial run is clustered only when asked, empty input is a clear error."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from bus.constants import META_PREFIX
from bus.keys import Keys
from bus.messages import output_path
from clusterer.catalog import load_catalog
from clusterer.cli import EXIT_EMPTY, EXIT_INCOMPLETE, main
from clusterer.completeness import check, cover
from clusterer.synthetic import SYNTHETIC_MODEL, PlantedSpec, planted, texts_for, write_like_a_worker, write_run

FAST = ["--reducer", "pca", "--map-points", "0", "-q"]


def make_run(root: Path, n: int = 900, files: int = 3) -> list[str]:
    x, labels = planted(PlantedSpec(n=n, clusters=3, seed=5, noise_share=0.0))
    return write_run(root, x, texts_for(labels, 5), files=files)


def test_complete_run_is_clustered(tmp_path: Path) -> None:
    make_run(tmp_path)
    assert main(["--data-root", str(tmp_path), *FAST]) == 0
    assert json.loads((tmp_path / "clusters" / "clusters_summary.json").read_text())["complete"] is True


def test_missing_output_is_refused_naming_the_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rels = make_run(tmp_path)
    (tmp_path / output_path(rels[1], None)).unlink()
    assert main(["--data-root", str(tmp_path), *FAST]) == EXIT_INCOMPLETE
    err = capsys.readouterr().err
    assert f"{rels[1]}: no output" in err and "--allow-partial" in err
    assert not (tmp_path / "clusters").exists()


def test_changed_input_makes_its_output_stale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rels = make_run(tmp_path)
    st = (tmp_path / rels[0]).stat()
    os.utime(tmp_path / rels[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert main(["--data-root", str(tmp_path), *FAST]) == EXIT_INCOMPLETE
    assert f"{rels[0]}: stale output" in capsys.readouterr().err


def test_partial_run_is_clustered_with_the_flag(tmp_path: Path) -> None:
    rels = make_run(tmp_path)
    (tmp_path / output_path(rels[2], None)).unlink()
    assert main(["--data-root", str(tmp_path), "--allow-partial", *FAST]) == 0
    summary = json.loads((tmp_path / "clusters" / "clusters_summary.json").read_text())
    assert summary["complete"] is False
    assert summary["missing"] == [f"{rels[2]}: no output"]
    assert summary["points"] == 600
    assert "Partial run" in (tmp_path / "clusters" / "report.md").read_text()


def test_queued_jobs_on_the_bus_make_the_run_incomplete(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    make_run(tmp_path)
    redis_client.hset(Keys("eftest").stats, mapping={"queued": 2, "dead": 1})
    args = ["--data-root", str(tmp_path), "--redis-url", redis_url, "--namespace", "eftest", *FAST]
    assert main(args) == EXIT_INCOMPLETE
    err = capsys.readouterr().err
    assert "2 job(s) still queued" in err and "1 job(s) dead-lettered" in err
    redis_client.hset(Keys("eftest").stats, mapping={"queued": 0, "dead": 0})
    assert main(args) == 0


def test_empty_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "chains").mkdir()
    assert main(["--data-root", str(tmp_path), *FAST]) == EXIT_EMPTY
    assert "nothing to cluster: no embedding outputs" in capsys.readouterr().err


def test_missing_input_root_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--input-root", str(tmp_path / "nope"), "--output-root", str(tmp_path), *FAST]
    assert main(args) == EXIT_EMPTY
    assert "does not exist" in capsys.readouterr().err


def test_outputs_without_their_inputs_point_at_the_input_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_run(tmp_path)
    (tmp_path / "elsewhere" / "chains").mkdir(parents=True)
    args = ["--input-root", str(tmp_path / "elsewhere"), "--output-root", str(tmp_path), *FAST]
    assert main(args) == EXIT_EMPTY
    assert "3 output(s) match no input" in capsys.readouterr().err


def test_only_empty_outputs_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_run(tmp_path, np.zeros((0, 384), np.float32), [], files=1)
    assert main(["--data-root", str(tmp_path), "--allow-partial", *FAST]) == EXIT_EMPTY
    assert "nothing to cluster" in capsys.readouterr().err


def test_hidden_temporary_files_are_ignored(tmp_path: Path) -> None:
    rels = make_run(tmp_path)
    out = tmp_path / output_path(rels[0], None)
    (out.parent / f".{out.name}.w1.abc.tmp").write_bytes(b"half written")
    (out.parent / f".{out.name}").write_bytes(b"hidden")
    assert len(load_catalog(tmp_path).parts) == 3
    assert load_catalog(tmp_path).broken == []


def test_corrupt_output_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rels = make_run(tmp_path)
    (tmp_path / output_path(rels[0], None)).write_bytes(b"not parquet")
    assert main(["--data-root", str(tmp_path), *FAST]) == EXIT_INCOMPLETE
    assert "not a readable Parquet file" in capsys.readouterr().err


def _split_outputs(root: Path, rel: str, ranges: list[tuple[int, int]]) -> None:
    """Replace the whole-file output of ``rel`` by row-range parts."""
    whole = root / output_path(rel, None)
    table = pq.read_table(whole).replace_schema_metadata(None)
    raw = pq.read_metadata(whole).metadata or {}
    meta = {k.decode(): v.decode() for k, v in raw.items() if k.startswith(META_PREFIX.encode())}
    assert meta, "outputs carry their provenance in the footer's key-value metadata"
    whole.unlink()
    for lo, hi in ranges:
        m = {**meta, META_PREFIX + "row_start": str(lo), META_PREFIX + "row_end": str(hi)}
        write_like_a_worker(table.slice(lo, hi - lo), root / output_path(rel, (lo, hi)), m)


def test_row_range_parts_cover_a_file(tmp_path: Path) -> None:
    rels = make_run(tmp_path)
    _split_outputs(tmp_path, rels[0], [(0, 100), (100, 300)])
    result = check(tmp_path, load_catalog(tmp_path), SYNTHETIC_MODEL, None)
    assert result.complete and result.rows == 900 and len(result.usable) == 4


def test_a_gap_between_parts_is_missing(tmp_path: Path) -> None:
    rels = make_run(tmp_path)
    _split_outputs(tmp_path, rels[0], [(0, 100), (200, 300)])
    result = check(tmp_path, load_catalog(tmp_path), SYNTHETIC_MODEL, None)
    assert result.missing == [f"{rels[0]}: rows 100-200 not embedded"]


def test_cover_skips_contained_and_overlapping_parts(tmp_path: Path) -> None:
    make_run(tmp_path, n=300, files=1)
    part = load_catalog(tmp_path).parts[0]
    from dataclasses import replace

    chosen, gaps = cover([replace(part, row_start=0, row_end=300), replace(part, row_start=50, row_end=100)], 300)
    assert len(chosen) == 1 and gaps == []
    chosen, gaps = cover([replace(part, row_start=0, row_end=200), replace(part, row_start=100, row_end=300)], 300)
    assert len(chosen) == 1 and any("overlaps" in g for g in gaps) and any("200-300" in g for g in gaps)


def test_outputs_of_two_models_need_a_choice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_run(tmp_path, files=2)
    x, labels = planted(PlantedSpec(n=300, clusters=3, seed=6))
    other = tmp_path / "other"
    write_run(other, x, texts_for(labels), files=1, model="another@1")
    src = other / "embeddings" / "synthetic" / "sub0" / "part-0000.parquet"
    dst = tmp_path / "embeddings" / "synthetic" / "sub0" / "extra.parquet"
    dst.write_bytes(src.read_bytes())
    assert main(["--data-root", str(tmp_path), *FAST]) == 2
    assert "--model" in capsys.readouterr().err
    assert main(["--data-root", str(tmp_path), "--model", SYNTHETIC_MODEL, *FAST]) == 0


def test_checkpoint_limits_the_inputs(tmp_path: Path) -> None:
    rels = make_run(tmp_path)
    (tmp_path / output_path(rels[1], None)).unlink()  # rels[1] lives in sub1
    (tmp_path / "subreddits_list.json").write_text(json.dumps(["sub0", "sub2"]))
    result = check(tmp_path, load_catalog(tmp_path), SYNTHETIC_MODEL, ["sub0", "sub2"])
    assert result.complete and result.inputs == 2
    assert main(["--data-root", str(tmp_path), *FAST]) == 0


def test_output_without_embedfleet_metadata_is_broken(tmp_path: Path) -> None:
    d = tmp_path / "embeddings" / "x" / "y"
    d.mkdir(parents=True)
    emb = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(384, np.float32)), 384)
    pq.write_table(pa.table({"row": pa.array([0], pa.int64()), "embedding": emb}), d / "f.parquet")
    catalog = load_catalog(tmp_path)
    assert catalog.parts == [] and "not an embedfleet output" in catalog.broken[0]
