"""The scan does not leave the data root through a symlink: a link to a file
or a directory outside is a scan error naming the link, and is skipped; a
link that stays inside is followed. The workers' hidden temporaries in the
output tree are no outputs, but are reported. The Rust scan and the Python
oracle agree."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from manager import _core, scan
from tests.support import pyscan

MODEL = "all-MiniLM-L6-v2@0000000000000000"


def parquet(path: Path, n: int = 3) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"text": [f"t{i}" for i in range(n)]}), path)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    root, outside = tmp_path / "data", tmp_path / "outside"
    parquet(root / "chains/s1/dogs/good.parquet")
    parquet(outside / "secret.parquet")
    parquet(outside / "cats/x.parquet")
    (root / "chains/s1/dogs/passwd.parquet").symlink_to(outside / "secret.parquet")
    (root / "chains/s1/cats").symlink_to(outside / "cats")
    (root / "chains/s1/dogs/alias.parquet").symlink_to("good.parquet")
    out = root / "embeddings/s1/dogs"
    out.mkdir(parents=True)
    (out / ".good.parquet.python-w1.0123abcd.89abcdef.tmp").write_bytes(b"")
    return root, outside


def test_symlinks_out_of_the_root_are_scan_errors_and_skipped(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    plan = scan.plan(root, root, MODEL, use_cache=False)
    assert sorted(j.path for j in plan.jobs) == ["chains/s1/dogs/alias.parquet", "chains/s1/dogs/good.parquet"]
    out_of_root = sorted(
        os.path.basename(e.path) for e in plan.errors if "symlink leads out of the data root" in e.problem
    )
    assert out_of_root == ["cats", "passwd.parquet"]
    assert len(plan.errors) == 2
    assert plan.report.temps == ["embeddings/s1/dogs/.good.parquet.python-w1.0123abcd.89abcdef.tmp"]
    assert plan.orphans == []


def test_the_python_oracle_agrees(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    rust = _core.scan(str(root), str(root), MODEL, rows_per_part=100, use_cache=False)
    plain = pyscan.scan(str(root), str(root), MODEL, rows_per_part=100)

    def fields(j: _core.PlannedJob) -> tuple[object, ...]:
        return j.id, j.path, j.out, j.fingerprint, j.rows

    assert [fields(j) for j in rust["jobs"]] == [fields(j) for j in plain["jobs"]]
    assert rust["issues"] == plain["issues"]
    assert rust["temps"] == plain["temps"]


def test_an_input_tree_that_is_a_symlink_out_is_refused(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    parquet(elsewhere / "chains/s1/a/x.parquet")
    root.mkdir()
    (root / "chains").symlink_to(elsewhere / "chains")
    with pytest.raises(Exception, match="symlink leads out of the data root"):
        scan.plan(root, root, MODEL, use_cache=False)
    with pytest.raises(ValueError, match="symlink leads out of the data root"):
        pyscan.scan(str(root), str(root), MODEL, rows_per_part=100)
