"""Partial runs: ``make run`` (``python -m manager run``) with a failed input
clusters what was embedded, lists the failed inputs with their reasons at the
top of the report, and still exits non-zero; a plain ``python -m clusterer``
keeps refusing the same run unless ``--allow-partial``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from clusterer.cli import EXIT_INCOMPLETE, main
from corpus.generate import generate_corpus

ROOT = Path(__file__).resolve().parent.parent


def corrupt_text_pages(path: Path) -> None:
    """Overwrite the first page header of the text column: the footer still reads, the texts do not."""
    group = pq.read_metadata(path).row_group(0)
    text = next(group.column(i) for i in range(group.num_columns) if group.column(i).path_in_schema == "text")
    with open(path, "r+b") as f:
        f.seek(text.dictionary_page_offset or text.data_page_offset)
        f.write(b"\xff" * 64)
    pq.ParquetFile(path).close()  # the footer is intact: the scan plans a job, the worker fails it


def test_make_run_clusters_what_it_has_and_lists_the_failed_inputs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    paths = generate_corpus(data, suffixes=1, subreddits=3, files_per_subreddit=2, rows_per_file=150, seed=3)
    dead = paths[1]
    corrupt_text_pages(dead)
    garbage = paths[0].with_name("garbage.parquet")
    garbage.write_bytes(b"not parquet at all")
    dead_rel, garbage_rel = (p.relative_to(data).as_posix() for p in (dead, garbage))
    env = {k: v for k, v in os.environ.items() if k not in ("EMBEDFLEET_REDIS_URL", "ORT_DYLIB_PATH")}
    proc = subprocess.run(
        [sys.executable, "-m", "manager", "run", "--data", str(data), "--rust-workers", "0", "--port", "0"],
        cwd=ROOT, env={**env, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, "a dead-lettered job and an unreadable input fail the run"
    assert any("clustering:" in line and "--allow-partial" in line for line in out.splitlines()), out[-3000:]
    summary = json.loads((data / "clusters" / "clusters_summary.json").read_text())
    embedded = sum(pq.read_metadata(p).num_rows for p in (data / "embeddings").rglob("*.parquet"))
    assert summary["complete"] is False and summary["outputs"] == len(paths) - 1, "the good files are clustered"
    assert summary["points"] == embedded > 0
    failed = {f["path"]: f["reason"] for f in summary["failed_inputs"]}
    assert set(failed) == {dead_rel, garbage_rel}
    assert failed[dead_rel].startswith("dead-lettered: ") and "corrupt" in failed[dead_rel], failed
    assert "not a readable Parquet file" in failed[garbage_rel]
    md = (data / "clusters" / "report.md").read_text()
    top = md.split("\n## ")[0].split("| cluster |")[0]
    assert "Partial run" in top and dead_rel in top and garbage_rel in top and "corrupt" in top
    assert "clusters and report under" in out

    # A plain clusterer run on the same data refuses it, and clusters it when told.
    assert main(["--data-root", str(data), "--reducer", "pca", "--map-points", "0", "-q"]) == EXIT_INCOMPLETE
    again = ["--data-root", str(data), "--allow-partial", "--reducer", "pca", "--map-points", "0", "-q"]
    assert main([*again, "--out", str(tmp_path / "again")]) == 0


pytestmark = pytest.mark.slow
