"""Where the Rust worker's ONNX Runtime comes from: the shared library inside
the ``onnxruntime`` wheel (``onnxruntime/capi/``), named by ``ORT_DYLIB_PATH``."""

from __future__ import annotations

import os
from pathlib import Path

ENV_ORT = "ORT_DYLIB_PATH"


def ort_library() -> Path:
    """``ORT_DYLIB_PATH`` if set, else the newest ``libonnxruntime.so*`` of the installed wheel."""
    if os.environ.get(ENV_ORT):
        return Path(os.environ[ENV_ORT])
    try:
        import onnxruntime
    except ImportError as e:
        raise FileNotFoundError(f"no onnxruntime wheel installed (run `make setup`) and {ENV_ORT} is unset") from e
    capi = Path(onnxruntime.__file__).parent / "capi"
    found = sorted(capi.glob("libonnxruntime.so*")) + sorted(capi.glob("libonnxruntime*.dylib"))
    if not found:
        raise FileNotFoundError(f"no libonnxruntime in {capi}: reinstall onnxruntime (`make setup`)")
    return found[-1]
