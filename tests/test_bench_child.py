"""bench.child measures a child's own peak RSS, CPU time and exit status, not
the parent's high-water mark that wait4 alone folds in after vfork + exec."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from bench.child import run_measured

ALLOC = "import numpy as np; b = np.ones({n}, dtype=np.uint8); print(int(b.sum()) > 0)"


def test_child_peak_rss_is_its_own_not_the_parents(tmp_path: Path) -> None:
    held = np.ones(600 * 2**20, dtype=np.uint8)  # the parent holds 600 MiB while the children run
    small = run_measured([sys.executable, "-c", "pass"], result_dir=tmp_path)
    big = run_measured([sys.executable, "-c", ALLOC.format(n=200 * 2**20)], result_dir=tmp_path)
    assert held.sum() == held.size
    assert small.returncode == 0 and big.returncode == 0
    assert small.peak_rss_mib < 100, small  # an interpreter, not the parent's 600 MiB
    assert 200 <= big.peak_rss_mib < 400, big  # its own 200 MiB array plus numpy
    assert big.cpu_s > 0 and big.wall_s > 0


def test_exit_status_and_timeout_come_back(tmp_path: Path) -> None:
    failed = run_measured([sys.executable, "-c", "raise SystemExit(3)"], result_dir=tmp_path)
    assert failed.returncode == 3 and not failed.timed_out
    slow = run_measured(["sleep", "30"], result_dir=tmp_path, timeout_s=0.5)
    assert slow.timed_out and slow.returncode == -15 and slow.wall_s < 20
    assert not list(tmp_path.glob("child-*.json")), "the launcher's reports are removed once read"
