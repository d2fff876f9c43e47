"""Which accelerator and which precision a worker uses.

Device: ``mps`` (Apple silicon), then ``cuda``, then ``cpu``, unless
``--device`` says otherwise. Precision ``auto``: fp16 on a GPU, bf16 autocast
on a CPU with AVX512-BF16 or AMX, fp32 otherwise; a reduced precision is kept
only when its embeddings stay within ``MIN_COSINE`` of fp32 on probe texts
(``workers.st_embedder`` checks), else the worker falls back to fp32.
"""

from __future__ import annotations

import platform
from pathlib import Path

DEVICES = ("auto", "mps", "cuda", "cpu")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
MIN_COSINE = 0.9999
"""Lowest cosine to fp32 at which a reduced precision is accepted."""

CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
CPU_VNNI_FLAGS = ("avx512_vnni", "avx_vnni")
"""x86 flags under which ONNX Runtime's U8S8 int8 kernels are exact (the Rust
worker checks the same features: ``model::cpu_has_vnni``)."""


def pick_device(requested: str = "auto") -> str:
    """The device to run on; a requested device that is absent is an error."""
    import torch

    available = {
        "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        "cuda": torch.cuda.is_available(),
        "cpu": True,
    }
    if requested == "auto":
        return next(d for d in ("mps", "cuda", "cpu") if available[d])
    if requested not in available:
        raise ValueError(f"unknown device {requested!r} (choose from {', '.join(DEVICES)})")
    if not available[requested]:
        raise ValueError(f"--device {requested}: not available on this machine")
    return requested


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """CPU feature flags (Linux); empty where unknown."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU runs bf16 matrix products natively (AVX512-BF16 or AMX)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    return any(f in cpu_flags() for f in CPU_BF16_FLAGS)


def cpu_has_vnni() -> bool:
    """Whether this x86 CPU has VNNI (AVX512-VNNI or AVX-VNNI) int8 dot products."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    return any(f in cpu_flags() for f in CPU_VNNI_FLAGS)


def candidate_precision(device: str, requested: str = "auto") -> str:
    """The precision to try first (quality-checked before use when reduced)."""
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r} (choose from {', '.join(PRECISIONS)})")
    if requested != "auto":
        if requested == "fp16" and device == "cpu":
            raise ValueError("--precision fp16 needs a GPU (use bf16 or fp32 on a CPU)")
        return requested
    if device in ("cuda", "mps"):
        return "fp16"
    return "bf16" if cpu_has_fast_bf16() else "fp32"
