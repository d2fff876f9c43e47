"""How to start each kind of worker the harness drives.

``mini`` is the harness's own bus-only worker (``tests/fault/miniworker.py``);
``python`` is ``python -m workers.mps`` and ``rust`` the ``embedfleet-worker``
binary. Each runs with the deterministic hash embedder (fast, exact) or the
real all-MiniLM-L6-v2 model (outputs compared within 1e-5).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from models.ort import ort_library

HOME = Path(os.environ.get("EMBEDFLEET_HOME", Path.home() / ".cache" / "embedfleet"))
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", HOME / "target"))
RUST_BIN = TARGET / "release" / "embedfleet-worker"
ROOT = Path(__file__).resolve().parents[2]
ONNX_DIR = ROOT / "models" / "onnx" / "minilm"


@dataclass(frozen=True)
class RunConfig:
    """What every worker of one run shares."""

    redis_url: str
    namespace: str
    input_root: Path
    output_root: Path
    lease_ms: int = 2000
    max_deliveries: int = 5


@dataclass(frozen=True)
class WorkerKind:
    name: str
    """``mini``, ``python`` or ``rust``."""
    embedder: str = "hash"
    """``hash`` (deterministic stand-in) or ``model`` (all-MiniLM-L6-v2)."""

    @property
    def label(self) -> str:
        return f"{self.name}-{self.embedder}"

    @property
    def tolerance(self) -> float:
        """How far an embedding may drift from the fault-free run's."""
        return 0.0 if self.embedder == "hash" else 1e-5

    def model_id(self) -> str:
        """The model id jobs carry: the real model's, whichever embedder runs
        (the hash embedders stand in for it under its id)."""
        from models.source import model_id

        return model_id()

    def argv(self, cfg: RunConfig, worker_id: str) -> list[str]:
        common = [
            "--redis-url", cfg.redis_url, "--namespace", cfg.namespace, "--input-root", str(cfg.input_root),
            "--output-root", str(cfg.output_root), "--worker-id", worker_id, "--lease-ms", str(cfg.lease_ms),
            "--max-deliveries", str(cfg.max_deliveries), "--burst",
        ]  # fmt: skip
        if self.name == "mini":
            return [sys.executable, "-m", "tests.fault.miniworker", *common]
        if self.name == "python":
            embedder = "hash" if self.embedder == "hash" else "sentence-transformers"
            model = ["--device", "cpu", "--precision", "fp32", "--threads", "1"]
            return [sys.executable, "-m", "workers.mps", *common, "--embedder", embedder, *model]
        if self.name == "rust":  # the hash stand-in reads only the model id from --model-dir
            stand_in = ["--embedder", "hash"] if self.embedder == "hash" else []
            return [str(RUST_BIN), *common, "--model-dir", str(ONNX_DIR), "--threads", "1", *stand_in]
        raise ValueError(f"unknown worker kind {self.name!r}")

    def env(self) -> dict[str, str]:
        env = {"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        if self.name == "rust":
            env["ORT_DYLIB_PATH"] = str(ort_dylib())
        return env


def ort_dylib() -> Path:
    """The ONNX Runtime library inside the onnxruntime wheel of the venv."""
    return ort_library()
