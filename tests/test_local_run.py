"""``make run``'s job (``python -m manager run``) end to end: embedded Redis, a
generated sample, one Python and one Rust worker with the real model, the
clusterer, and the summary a user reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache" / "embedfleet" / "target")
BINARY = TARGET / "release" / "embedfleet-worker"
ONNX_DIR = ROOT / "models" / "onnx" / "minilm"


def worker_kinds(out_root: Path) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for path in (out_root / "embeddings").rglob("*.parquet"):
        meta = pq.read_metadata(path).metadata or {}
        kinds[meta[b"embedfleet.worker_kind"].decode()] += 1
    return kinds


@pytest.mark.slow
def test_make_run_embeds_with_both_kinds_clusters_and_summarises(tmp_path: Path) -> None:
    for need, how in ((BINARY, "cargo build --release"), (ONNX_DIR / "embedfleet_model.json", "make export-onnx")):
        if not need.exists():
            pytest.fail(f"{need} is missing: run `{how}` (make setup does both)")
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k not in ("EMBEDFLEET_REDIS_URL", "ORT_DYLIB_PATH")}
    proc = subprocess.run(
        [sys.executable, "-m", "manager", "run", "--data", str(data), "--worker-bin", str(BINARY),
         "--onnx-dir", str(ONNX_DIR), "--sample-files", "2", "--sample-rows", "250", "--port", "0"],
        cwd=ROOT, env={**env, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]

    inputs = sorted((data / "chains").rglob("*.parquet"))
    assert len(inputs) == 16, "the generated sample: 2 suffixes x 4 subreddits x 2 files"
    kinds = worker_kinds(data)
    assert sum(kinds.values()) == len(inputs), out[-3000:]
    assert set(kinds) == {"python", "rust"}, f"both kinds drained the queue together: {kinds}"

    summary = json.loads((data / "clusters" / "clusters_summary.json").read_text())
    assert summary["clusters"] >= 1 and summary["complete"] is True
    assert (data / "clusters" / "report.html").is_file() and (data / "clusters" / "map.png").is_file()
    assert f"files: {len(inputs)} inputs, {len(inputs)} outputs" in out
    assert f"{summary['clusters']} clusters found" in out
    assert "DONE" in out and "python/" in out and "rust/" in out, "rows/s per worker kind"
