"""Third-party warnings are handled where they arise, not printed at users:
ONNX Runtime's quantiser gets its pre-processing (no "Please consider to run
pre-processing" line), the ONNX export's tracer notes that do not apply to
this graph are silenced by category and message, and umap-learn's
disconnected-graph and spectral-initialisation warnings become one line of
ours (issue 19, "quiet-but-noisy")."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clusterer.reduce import DISCONNECTED, SPECTRAL_FAILED, fit_umap
from models.onnx_quant import quantize_int8
from tests.test_export_onnx import _tiny_model


def test_quantisation_warns_and_logs_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(0)
    src = tmp_path / "tiny.onnx"
    _tiny_model(src, rng)
    feeds: dict[str, np.ndarray] = {
        "x": rng.standard_normal((2, 5, 8)).astype(np.float32),
        "attention_mask": np.ones((2, 5), np.int64),
    }
    caplog.set_level(logging.INFO)
    for alpha in (0.65, 0.0):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            quantize_int8(src, tmp_path / "int8.onnx", lambda: [feeds], alpha=alpha)
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not loud, loud
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int8.onnx", "tiny.onnx"], "no temporary model left"


class NoisyUmap:
    """Stands in for umap-learn on a graph in 42 pieces: the warnings it gives."""

    def __init__(self, pieces: int = 42, other: bool = True) -> None:
        self.pieces, self.other = pieces, other

    def fit_transform(self, x: np.ndarray) -> Any:
        warnings.warn(f"{DISCONNECTED}, spectral embedding may not work as expected.", UserWarning, stacklevel=1)
        for _ in range(self.pieces):
            warnings.warn(f"{SPECTRAL_FAILED}! The eigenvector solver\nfailed.", UserWarning, stacklevel=1)
        if self.other:
            warnings.warn("something else", RuntimeWarning, stacklevel=1)
        return x[:, :2]


def test_umap_spectral_warnings_become_one_line_and_others_pass(caplog: pytest.LogCaptureFixture) -> None:
    x = np.arange(20, dtype=np.float64).reshape(10, 2)
    with warnings.catch_warnings(record=True) as passed:
        warnings.simplefilter("always")
        points = fit_umap(NoisyUmap(), x)
    assert points.dtype == np.float32 and points.shape == (10, 2)
    assert [str(w.message) for w in passed] == ["something else"], "only the unrelated warning is passed on"
    lines = [r.getMessage() for r in caplog.records if r.name == "embedfleet.clusterer"]
    assert len(lines) == 1 and "failed on 42 of them" in lines[0] and "several pieces" in lines[0], lines


def test_a_quiet_umap_fit_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    class Quiet:
        def fit_transform(self, x: np.ndarray) -> np.ndarray:
            return x

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_umap(Quiet(), np.zeros((3, 2)))
    assert not caplog.records


@pytest.mark.slow
def test_real_umap_on_a_graph_in_pieces_prints_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    """Thirty tight groups far apart: umap-learn's graph falls apart in
    pieces and it warns; none of it reaches the user."""
    import umap  # noqa: F401  # imported first: its ImportWarning (no TensorFlow) is hidden by Python's default filters

    from clusterer.backend import CpuBackend
    from clusterer.reduce import umap_sample

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(30, 10)) * 100
    x = np.concatenate([c + rng.normal(size=(25, 10)) * 1e-6 for c in centres]).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reduced = umap_sample(CpuBackend(), x, dims=5, neighbors=15, seed=0)
    assert reduced.points.shape == (750, 5) and np.isfinite(reduced.points).all()
    lines = [r.getMessage() for r in caplog.records if r.name == "embedfleet.clusterer"]
    assert len(lines) == 1 and "several pieces" in lines[0], lines


@pytest.mark.slow
def test_the_onnx_export_prints_no_tracer_or_exporter_warning(tmp_path: Path) -> None:
    from models.export_onnx import export_fp32
    from models.source import default_model_dir, offline

    offline()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_fp32(default_model_dir(), tmp_path / "model.onnx")
    assert (tmp_path / "model.onnx").stat().st_size > 1_000_000
    shown = [f"{w.category.__name__}: {str(w.message)[:120]} ({w.filename}:{w.lineno})" for w in caught]
    assert not shown, "\n".join(shown)
