"""``python -m manager scan``: dry run, enqueue, watch, orphans, problems
reported with their path (permission errors included), bad arguments."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from bus.keys import Keys
from manager import scan_cli
from tests.support import ROOT
from tests.support.scan_tree import MODEL, Tree


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    scan_cli.register(parser.add_subparsers())
    args = parser.parse_args(["scan", *argv])
    return int(args.func(args))


def base(tree: Tree) -> list[str]:
    return ["--input", str(tree.input), "--output", str(tree.output), "--model", MODEL]


def manager_cmd(tree: Tree, *extra: str) -> list[str]:
    return [sys.executable, "-m", "manager", "scan", *base(tree), *extra]


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    t = Tree(tmp_path)
    t.add_input("2024-01/cats/a.parquet")
    t.add_input("2024-01/cats/b.parquet", rows=50, row_group=10)
    t.add_input("2024-01/dogs/c.parquet")
    t.add_output("2024-01/cats/a.parquet")
    return t


def table_row(out: str, name: str) -> list[str]:
    return next(line.split() for line in out.splitlines() if line.split()[:1] == [name])


def test_dry_run_prints_counts_per_subreddit_and_enqueues_nothing(
    tree: Tree, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EMBEDFLEET_REDIS_URL", raising=False)
    assert cli(*base(tree), "--dry-run", "--rows-per-part", "20") == 0
    out = capsys.readouterr().out
    # files, up to date, missing, modified, split parts, jobs, orphans, errors
    assert table_row(out, "cats")[1:] == ["2", "1", "1", "0", "3", "3", "0", "0"]
    assert table_row(out, "dogs")[1:] == ["1", "0", "1", "0", "0", "1", "0", "0"]
    assert table_row(out, "TOTAL")[1:] == ["3", "1", "2", "0", "3", "4", "0", "0"]
    assert "4 jobs needed" in out and "enqueued" not in out


def test_a_scan_enqueues_and_a_rerun_enqueues_nothing(
    tree: Tree, capsys: pytest.CaptureFixture[str], redis_url: str, redis_client: redis.Redis
) -> None:
    args = [*base(tree), "--redis-url", redis_url, "--namespace", "eftest"]
    assert cli(*args) == 0
    assert "enqueued 2 new, 0 already known" in capsys.readouterr().out
    assert cli(*args, "--reconcile") == 0
    out = capsys.readouterr().out
    assert "enqueued 0 new, 2 already known" in out and "reconcile re-added 0" in out
    assert redis_client.xlen(Keys("eftest").queue("default")) == 2


def test_a_done_job_whose_output_was_deleted_is_queued_again_loudly(
    tree: Tree, capsys: pytest.CaptureFixture[str], redis_url: str, redis_client: redis.Redis
) -> None:
    args = [*base(tree), "--redis-url", redis_url, "--namespace", "eftest"]
    assert cli(*args) == 0
    capsys.readouterr()
    keys = Keys("eftest")
    # A worker finished both jobs: outputs written, states done, stream trimmed.
    plan = tree.plan()
    for job in plan.jobs:
        rel = job.path.removeprefix("chains/")
        tree.add_output(rel)
        redis_client.hset(keys.state, job.id, "d")
    redis_client.delete(keys.queue("default"))
    assert cli(*args) == 0
    assert "enqueued 0 new, 0 already known" in capsys.readouterr().out
    # Someone deletes one output: the next scan plans it again, and the job,
    # though done on the bus, goes back on the queue (not skipped silently).
    lost = next(j for j in plan.jobs if "dogs" in j.path)
    (tree.output / lost.out).unlink()
    assert cli(*args) == 0
    cap = capsys.readouterr()
    assert "1 done jobs re-queued (outputs gone)" in cap.out
    assert "warning: 1 jobs were done but their outputs are gone" in cap.err and lost.out in cap.err
    assert redis_client.hget(keys.state, lost.id) == b"q"
    assert redis_client.xlen(keys.queue("default")) == 1
    # The other job's output is still there: still done, nothing else queued.
    kept = next(j for j in plan.jobs if j.id != lost.id)
    assert redis_client.hget(keys.state, kept.id) == b"d"


def test_routes_on_the_command_line_pick_lanes(tree: Tree, redis_url: str, redis_client: redis.Redis) -> None:
    assert cli(*base(tree), "--redis-url", redis_url, "--namespace", "eftest", "--route", "dog*=pets") == 0
    keys = Keys("eftest")
    assert (redis_client.xlen(keys.queue("pets")), redis_client.xlen(keys.queue("default"))) == (1, 1)


def test_orphans_are_deleted_only_with_the_flag(tree: Tree, capsys: pytest.CaptureFixture[str]) -> None:
    orphan = tree.add_output("2024-01/dogs/c.parquet")
    (tree.input / "chains/2024-01/dogs/c.parquet").unlink()
    assert cli(*base(tree), "--dry-run") == 0 and orphan.exists()
    assert table_row(capsys.readouterr().out, "dogs")[7] == "1"
    assert cli(*base(tree), "--dry-run", "--delete-orphans") == 0
    assert not orphan.exists() and "deleted 1 orphans" in capsys.readouterr().out


def test_problems_are_listed_with_their_path_and_the_report_written(
    tree: Tree, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tree.input / "chains/2024-01/cats/broken.parquet"
    bad.write_text("not parquet")
    report = tmp_path / "report.json"
    assert cli(*base(tree), "--dry-run", "--report", str(report)) == 0
    err = capsys.readouterr().err
    assert f"{bad}: not a parquet file" in err
    data = json.loads(report.read_text())
    assert data["errors"] == [{"path": str(bad), "problem": data["errors"][0]["problem"]}]
    assert data["totals"]["errors"] == 1 and [s["name"] for s in data["subreddits"]] == ["cats", "dogs"]


def test_bad_arguments_exit_2_with_a_message(
    tree: Tree, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EMBEDFLEET_REDIS_URL", raising=False)
    assert cli(*base(tree)) == 2
    assert "--redis-url" in capsys.readouterr().err
    assert cli(*base(tree), "--dry-run", "--route", "cats") == 2
    assert "bad pattern rule" in capsys.readouterr().err
    assert cli("--input", str(tree.input / "nope"), "--output", str(tree.output), "--model", MODEL, "--dry-run") == 2
    assert "no such directory" in capsys.readouterr().err


def test_an_unreadable_directory_is_reported_and_the_rest_scanned(tree: Tree) -> None:
    """Run as an unprivileged user would: root ignores file permissions, so
    as root the scan runs with its permission-override capabilities dropped."""
    locked = tree.input / "chains/2024-01/dogs"
    locked.chmod(0)
    cmd = manager_cmd(tree, "--dry-run", "--no-cache")
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to drop root's permission override"
        caps = "-dac_override,-dac_read_search"
        cmd = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}", *cmd]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    finally:
        locked.chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    assert f"{locked}: cannot read directory: permission denied" in proc.stderr
    assert table_row(proc.stdout, "cats")[1:3] == ["2", "1"]


def test_watch_picks_up_new_files(tree: Tree, redis_url: str, redis_client: redis.Redis) -> None:
    cmd = manager_cmd(tree, "--watch", "0.2", "--max-scans", "40", "--redis-url", redis_url, "--namespace", "eftest")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        first = proc.stdout.readline()
        assert first.startswith("scan 1:") and "enqueued 2 new" in first, first
        tree.add_input("2024-02/cats/new.parquet")
        deadline = time.monotonic() + 30
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "enqueued 1 new" in line or not line:
                break
        assert "enqueued 1 new" in lines[-1], lines
    finally:
        proc.terminate()
        proc.wait(10)
    keys = Keys("eftest")
    assert redis_client.xlen(keys.queue("default")) == 3
