"""``python -m manager run`` takes the job options ``serve`` has: an
``--id-column`` ends up in every output beside its row, and
``--keep-serving`` keeps the dashboard up after the run until SIGINT, which
then exits with the run's own status."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.support import ROOT
from tests.support.procs import free_port
from tests.test_manager_sigterm import Manager


@pytest.mark.slow
def test_run_copies_the_id_column_and_keeps_serving_until_sigint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, port = tmp_path / "data", free_port()
    monkeypatch.delenv("EMBEDFLEET_REDIS_URL", raising=False)  # the embedded Redis
    monkeypatch.setenv("EMBEDFLEET_DASHBOARD_PUBLISHED", "18999")  # as Compose publishes it
    m = Manager(
        "run", "--data-root", str(data), "--rust-workers", "0", "--no-cluster", "--id-column", "id",
        "--sample-files", "1", "--sample-rows", "20", "--port", str(port), "--keep-serving",
    )  # fmt: skip
    try:
        m.wait_for("shows the final state", timeout_s=600)
        # The closing line names the address a person opens, not the one listened on.
        final = next(line for line in m.seen if "shows the final state" in line)
        assert "http://127.0.0.1:18999/" in final, final
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
            assert page.status == 200, "the dashboard is still up after the run"
        m.proc.send_signal(signal.SIGINT)
        rc = m.proc.wait(30)
    finally:
        m.close()
    assert rc == 0, "".join(m.seen)[-3000:]
    inputs = sorted((data / "chains").rglob("*.parquet"))
    assert len(inputs) == 8
    for path in inputs:
        out = data / "embeddings" / path.relative_to(data / "chains")
        got = pq.read_table(out, columns=["row", "id"]).to_pydict()
        want = pq.read_table(path, columns=["id"]).column("id").to_pylist()
        assert got["id"] and [want[r] for r in got["row"]] == got["id"], out  # rows without text have no output


def test_run_refuses_a_missing_checkpoint_before_writing_anything(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = subprocess.run(
        [
            sys.executable, "-m", "manager", "run",
            "--data-root", str(data), "--subreddits-list", str(tmp_path / "nope.json"), "--port", "0",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and f"--subreddits-list {tmp_path / 'nope.json'}: no such file" in proc.stderr
    assert not data.exists()
