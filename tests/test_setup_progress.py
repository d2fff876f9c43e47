"""``deploy/setup-progress.sh``: set-up's long steps report a heartbeat with
what the tool is doing, instead of silence (``-q``) or hundreds of lines."""

from __future__ import annotations

import os
import subprocess

from tests.support import ROOT

SCRIPT = ROOT / "deploy" / "setup-progress.sh"
NOISY = (
    'for i in $(seq 1 227); do echo "  Downloaded crate$i v1.0.0"; done; echo "   Compiling parquet v60.0.0"; sleep 3'
)


def busy(*cmd: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEARTBEAT": "1"}
    return subprocess.run(
        [str(SCRIPT), *cmd], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_a_long_step_says_it_is_still_going_with_what_it_does_and_not_each_crate() -> None:
    proc = busy("building embedfleet-worker", "bash", "-c", NOISY)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    beats = [line for line in lines if line.startswith("[setup] still building embedfleet-worker…")]
    assert beats, proc.stderr
    assert "227 crates downloaded; Compiling parquet v60.0.0" in beats[-1]
    assert not [line for line in lines if "Downloaded crate" in line]
    assert lines[-1].startswith("[setup] done: building embedfleet-worker (")
    assert proc.stdout == ""


def test_a_failed_step_shows_the_end_of_its_output_and_its_exit_status() -> None:
    failing = "echo Collecting torch; echo 'ERROR: no space left'; exit 3"
    proc = busy("installing requirements.txt", "bash", "-c", failing)
    assert proc.returncode == 3
    assert "[setup] installing requirements.txt failed (exit 3)" in proc.stderr
    assert proc.stderr.rstrip().endswith("ERROR: no space left")
