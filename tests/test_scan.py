"""``manager.scan.plan`` on generated trees: what is missing, up to date,
modified or vanished, row-range splitting, the checkpoint list, bad files,
the footer cache, and agreement with the pure-Python reference scanner."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from bus.messages import Job
from manager import scan
from manager.routing import Routes
from tests.support.scan_tree import MODEL, Tree


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return Tree(tmp_path)


def paths(plan: scan.Plan) -> list[str]:
    return [j.path for j in plan.jobs]


def test_missing_inputs_become_jobs_derived_like_the_protocol(tree: Tree) -> None:
    tree.add_input("2024-01/cats/a.parquet")
    tree.add_input("2024-01/cats/b.parquet")
    plan = tree.plan(column="body", id_column="id")
    assert paths(plan) == ["chains/2024-01/cats/a.parquet", "chains/2024-01/cats/b.parquet"]
    fp = tree.fingerprint("2024-01/cats/a.parquet")
    expected = Job.create("chains/2024-01/cats/a.parquet", fp, MODEL, None, column="body", id_column="id")
    assert plan.jobs[0] == expected
    counts = plan.report.subreddits["cats"]
    assert (counts.files, counts.missing, counts.up_to_date, counts.jobs) == (2, 2, 0, 2)
    assert plan.orphans == [] and plan.errors == []


def test_up_to_date_outputs_need_no_job(tree: Tree) -> None:
    tree.add_input("s/cats/a.parquet")
    tree.add_input("s/cats/b.parquet")
    tree.add_output("s/cats/a.parquet")
    plan = tree.plan()
    assert paths(plan) == ["chains/s/cats/b.parquet"]
    assert plan.report.subreddits["cats"].up_to_date == 1
    tree.add_output("s/cats/b.parquet")
    assert tree.plan().jobs == []


def test_a_modified_input_is_enqueued_again_under_its_new_fingerprint(tree: Tree) -> None:
    tree.add_input("s/cats/a.parquet")
    tree.add_output("s/cats/a.parquet")
    old = tree.fingerprint("s/cats/a.parquet")
    tree.add_input("s/cats/a.parquet", rows=5, tag="changed ")
    os.utime(tree.input / "chains/s/cats/a.parquet", ns=(1, 1_700_000_000_123_456_789))
    plan = tree.plan()
    assert [j.fingerprint for j in plan.jobs] == [tree.fingerprint("s/cats/a.parquet")]
    assert plan.jobs[0].fingerprint != old
    assert plan.report.subreddits["cats"].modified == 1


def test_an_output_of_another_model_is_redone(tree: Tree) -> None:
    tree.add_input("s/cats/a.parquet")
    tree.add_output("s/cats/a.parquet", model="all-MiniLM-L6-v2@ffffffffffffffff")
    plan = tree.plan()
    assert len(plan.jobs) == 1 and plan.jobs[0].model == MODEL
    assert plan.report.subreddits["cats"].modified == 1


def test_outputs_whose_input_vanished_are_reported_and_deleted_only_when_asked(tree: Tree) -> None:
    tree.add_input("s/cats/a.parquet")
    tree.add_input("s/cats/gone.parquet")
    tree.add_input("s/dogs/gone.parquet", rows=300, row_group=100)
    kept = tree.add_output("s/cats/a.parquet")
    orphan = tree.add_output("s/cats/gone.parquet")
    part = tree.add_output("s/dogs/gone.parquet", rows=(0, 100))
    (tree.input / "chains/s/cats/gone.parquet").unlink()
    (tree.input / "chains/s/dogs/gone.parquet").unlink()
    plan = tree.plan()
    assert plan.orphans == ["embeddings/s/cats/gone.parquet", "embeddings/s/dogs/gone.rows-0-100.parquet"]
    assert plan.report.subreddits["dogs"].orphans == 1
    assert orphan.exists() and part.exists()
    assert scan.delete_orphans(plan) == 2
    assert not orphan.exists() and not part.exists() and kept.exists()
    assert tree.plan().orphans == []


def test_large_files_are_split_into_parts_aligned_to_row_groups(tree: Tree) -> None:
    tree.add_input("s/cats/big.parquet", rows=300, row_group=30)
    tree.add_input("s/cats/small.parquet", rows=100, row_group=30)
    plan = tree.plan(rows_per_part=100)
    fp = tree.fingerprint("s/cats/big.parquet")
    ranges = [(0, 90), (90, 180), (180, 270), (270, 300)]
    assert [j.rows for j in plan.jobs] == [*ranges, None]
    assert plan.jobs[1] == Job.create("chains/s/cats/big.parquet", fp, MODEL, (90, 180))
    assert plan.jobs[1].out == "embeddings/s/cats/big.rows-90-180.parquet"
    assert plan.report.subreddits["cats"].split_parts == 4


def test_only_the_missing_parts_of_a_split_file_are_enqueued(tree: Tree) -> None:
    tree.add_input("s/cats/big.parquet", rows=300, row_group=100)
    tree.add_output("s/cats/big.parquet", rows=(0, 100))
    tree.add_output("s/cats/big.parquet", rows=(200, 300))
    plan = tree.plan(rows_per_part=100)
    assert [j.rows for j in plan.jobs] == [(100, 200)]
    tree.add_output("s/cats/big.parquet", rows=(100, 200))
    plan = tree.plan(rows_per_part=250)  # complete parts stay valid under another split policy
    assert plan.jobs == [] and plan.report.subreddits["cats"].up_to_date == 1


@pytest.mark.parametrize("form", ["list", "object"])
def test_the_checkpoint_list_picks_subreddits_and_their_order(tree: Tree, form: str) -> None:
    for rel in ["s1/apple/x.parquet", "s1/banana/x.parquet", "s2/banana/x.parquet", "s2/cherry/x.parquet"]:
        tree.add_input(rel)
    names = ["cherry", "banana", "durian"]
    body: Any = names if form == "list" else {"subreddits": names}
    (tree.input / scan.SUBREDDIT_LIST).write_text(json.dumps(body))
    plan = tree.plan()
    assert paths(plan) == ["chains/s2/cherry/x.parquet", "chains/s1/banana/x.parquet", "chains/s2/banana/x.parquet"]
    assert list(plan.report.subreddits) == names
    assert [e.problem for e in plan.errors] == [
        "subreddit 'durian' is in the checkpoint list but has no directory under any suffix"
    ]
    # An explicit list beats the file in the root.
    assert paths(tree.plan(subreddit_list=["apple"])) == ["chains/s1/apple/x.parquet"]


def test_a_malformed_checkpoint_list_is_refused(tree: Tree) -> None:
    (tree.input / scan.SUBREDDIT_LIST).write_text('{"subs": 3}')
    with pytest.raises(ValueError, match=r"subreddits_list\.json"):
        tree.plan()


def test_bad_files_are_reported_with_their_path_and_the_scan_goes_on(tree: Tree) -> None:
    tree.add_input("s/cats/good.parquet")
    bad = tree.input / "chains/s/cats"
    (bad / "fake.parquet").write_text("not parquet, although the name says so")
    (bad / "empty.parquet").write_bytes(b"")
    (bad / "dir.parquet").mkdir()
    (bad / "dangling.parquet").symlink_to(tree.input / "nowhere")
    (tree.input / "chains/s/lost").symlink_to(tree.input / "nowhere")
    (bad / "notes.txt").write_text("not a .parquet name: ignored")
    plan = tree.plan()
    assert paths(plan) == ["chains/s/cats/good.parquet"]
    found = {Path(e.path).name: e.problem for e in plan.errors}
    assert set(found) == {"fake.parquet", "empty.parquet", "dir.parquet", "dangling.parquet", "lost"}
    assert "not a parquet file" in found["fake.parquet"]
    assert "broken symlink" in found["dangling.parquet"] and "broken symlink" in found["lost"]
    assert all(Path(e.path).is_absolute() for e in plan.errors)
    assert plan.report.subreddits["cats"].errors == 4


def test_a_corrupt_output_is_reported_and_redone(tree: Tree) -> None:
    tree.add_input("s/cats/a.parquet")
    out = tree.add_output("s/cats/a.parquet")
    out.write_bytes(out.read_bytes()[:-20] + b"\0" * 16 + b"PAR1")
    plan = tree.plan()
    assert paths(plan) == ["chains/s/cats/a.parquet"]
    assert [Path(e.path) for e in plan.errors] == [out]
    assert plan.report.subreddits["cats"].modified == 1


def test_a_warm_rescan_reads_no_footer_and_the_cache_is_disposable(tree: Tree) -> None:
    for i in range(4):
        tree.add_input(f"s/cats/{i}.parquet")
    tree.add_output("s/cats/0.parquet")
    cold = tree.plan()
    assert (cold.report.stats["output_footers_read"], cold.report.stats["input_footers_read"]) == (1, 3)
    cache = tree.output / scan.CACHE_PATH
    assert cache.is_file()
    warm = tree.plan()
    assert (warm.report.stats["output_footers_read"], warm.report.stats["input_footers_read"]) == (0, 0)
    assert warm.jobs == cold.jobs
    cache.write_bytes(b"garbage")
    rebuilt = tree.plan()
    assert rebuilt.report.stats["cache_load"] == "rebuilt" and rebuilt.jobs == cold.jobs
    # A rewritten output (new inode and mtime) is read again, not trusted from the cache.
    tree.add_output("s/cats/0.parquet", fingerprint="1-1")
    assert paths(tree.plan())[0] == "chains/s/cats/0.parquet"


def test_jobs_are_routed_to_lanes(tree: Tree) -> None:
    tree.add_input("s/AskScience/a.parquet")
    tree.add_input("s/cats/big.parquet", rows=2000)
    tree.add_input("s/cats/small.parquet", rows=2)
    big = os.stat(tree.input / "chains/s/cats/big.parquet").st_size
    routes = Routes.parse(["ask*=priority"], [f"{big}=gpu"])
    lanes = {j.path.rsplit("/", 1)[1]: j.lane for j in tree.plan(routes=routes).jobs}
    assert lanes == {"a.parquet": "priority", "big.parquet": "gpu", "small.parquet": "default"}


def test_without_an_output_tree_everything_is_missing(tree: Tree) -> None:
    tree.add_input("s/cats/a.parquet")
    plan = tree.plan(use_cache=False)
    assert len(plan.jobs) == 1 and not tree.output.exists()


def test_without_an_input_tree_the_scan_refuses(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="chains"):
        scan.plan(tmp_path / "nothing", tmp_path / "out", MODEL)


def test_the_rust_scan_agrees_with_the_python_reference(tree: Tree) -> None:
    """The oracle: one tree with every case, scanned by both."""
    for s in ("2024-01", "2024-02"):
        for sub in ("apple", "banana"):
            for i in range(3):
                tree.add_input(f"{s}/{sub}/f{i}.parquet", rows=7 + i * 40, row_group=20)
    tree.add_output("2024-01/apple/f0.parquet")
    tree.add_output("2024-01/apple/f1.parquet", model="other@1")
    tree.add_output("2024-02/banana/f2.parquet", rows=(0, 40))
    tree.add_output("2024-02/banana/f1.parquet", fingerprint="0-0")
    tree.add_input("2024-02/cherry/gone.parquet")
    tree.add_output("2024-02/cherry/gone.parquet")
    (tree.input / "chains/2024-02/cherry/gone.parquet").unlink()
    (tree.input / "chains/2024-01/banana/fake.parquet").write_text("nope")
    (tree.input / "chains/2024-01/banana/dangling.parquet").symlink_to("/nonexistent")
    for rows_per_part, subs in ((1000, None), (40, None), (40, ["banana", "cherry", "zz"])):
        rust, py = tree.raw(rows_per_part, subs)
        assert rust["jobs"] == py["jobs"]
        assert rust["subreddits"] == py["subreddits"]
        assert rust["orphans"] == py["orphans"]
        assert [p for p, _ in rust["issues"]] == [p for p, _ in py["issues"]]
        for k in ("dirs", "files", "output_footers_read", "input_footers_read"):
            assert rust["stats"][k] == py["stats"][k], k
    assert any(j.rows is not None for j in rust["jobs"]), "the oracle tree exercises splitting"
