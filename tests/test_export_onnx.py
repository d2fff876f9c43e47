"""The ONNX export: the exported directory (written by ``make setup``), the
smoothing and quantisation on a small graph, and the gate that refuses to
write a model that drifts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from models import export_onnx, sample_texts
from models.onnx_quant import activation_absmax, quantize_int8, smooth
from models.source import ONNX_MANIFEST, default_model_dir, model_id, weights_sha256
from workers.device import cpu_has_vnni

ROOT = Path(__file__).resolve().parent.parent
ONNX_DIR = ROOT / "models" / "onnx" / "minilm"


@pytest.fixture(scope="module")
def exported() -> Path:
    if not (ONNX_DIR / ONNX_MANIFEST).is_file():
        pytest.fail(f"{ONNX_DIR} is missing: run `make export-onnx` (part of `make setup`)")
    return ONNX_DIR


def test_onnx_dir_yields_the_same_model_id_as_the_pytorch_dir(exported: Path) -> None:
    meta = json.loads((exported / ONNX_MANIFEST).read_text())
    src = default_model_dir()
    assert meta["weights_sha256"] == weights_sha256(src)
    assert model_id(exported) == model_id(src) == meta["model_id"]


def test_exported_graphs_have_dynamic_batch_and_sequence_axes(exported: Path) -> None:
    meta = json.loads((exported / ONNX_MANIFEST).read_text())
    for variant in ("fp32", "int8"):
        m = onnx.load(str(exported / meta["variants"][variant]["file"]), load_external_data=False)
        dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in m.graph.input}
        assert dims == {name: ["batch", "sequence"] for name in export_onnx.INPUTS}
        out = m.graph.output[0]
        assert out.name == export_onnx.OUTPUT
        assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", 384]
    ops = {n.op_type for n in onnx.load(str(exported / "model_int8.onnx"), load_external_data=False).graph.node}
    assert "MatMulInteger" in ops and "DynamicQuantizeLinear" in ops


def test_tokenizer_truncates_at_256_without_fixed_padding(exported: Path) -> None:
    tok = json.loads((exported / "tokenizer.json").read_text())
    assert tok["truncation"]["max_length"] == 256
    assert tok["padding"] is None
    assert json.loads((exported / "1_Pooling" / "config.json").read_text())["pooling_mode_mean_tokens"] is True


def test_recorded_quality_passes_the_gate(exported: Path) -> None:
    q = json.loads((exported / ONNX_MANIFEST).read_text())["quality"]
    assert q["sample_texts"] == len(sample_texts.quality_sample())
    export_onnx.check_gate(q["fp32_vs_sentence_transformers"], q["int8_vs_fp32"], q.get("int8_vnni_vs_fp32"))


def _weight_types(path: Path) -> set[int]:
    """Element types of the constant B inputs of a graph's MatMulInteger nodes."""
    m = onnx.load(str(path))
    inits = {i.name: i.data_type for i in m.graph.initializer}
    return {inits[n.input[1]] for n in m.graph.node if n.op_type == "MatMulInteger" and n.input[1] in inits}


def test_the_vnni_variant_exists_exactly_where_the_exporting_cpu_has_vnni(exported: Path) -> None:
    """uint8 weights everywhere; int8 weights (U8S8 kernels) only as an extra
    variant, graded on a CPU whose kernels for them are exact."""
    meta = json.loads((exported / ONNX_MANIFEST).read_text())
    assert _weight_types(exported / meta["variants"]["int8"]["file"]) == {TensorProto.UINT8}
    assert ("int8_vnni" in meta["variants"]) == cpu_has_vnni() == ("int8_vnni_vs_fp32" in meta["quality"])
    if cpu_has_vnni():
        v = meta["variants"]["int8_vnni"]
        assert v["file"] == export_onnx.INT8_VNNI_FILE and v["quantization"]["weight_type"] == "int8"
        assert set(v["cpu_flags_any"]) == {"avx512_vnni", "avx_vnni"}
        assert _weight_types(exported / v["file"]) == {TensorProto.INT8}


def test_sample_is_fixed_distinct_and_disjoint_from_calibration() -> None:
    sample = sample_texts.quality_sample()
    assert sample == sample_texts.quality_sample()
    assert len(sample) == len(set(sample)) >= 200
    assert any(len(t.split()) > 300 for t in sample), "long texts exercise truncation"
    assert not set(sample) & set(sample_texts.calibration())


def test_the_gate_names_every_failing_figure() -> None:
    good = {"mean": 1.0, "p1": 1.0, "min": 1.0}
    export_onnx.check_gate(good, {"mean": 0.995, "p1": 0.96, "min": 0.9})
    with pytest.raises(export_onnx.QualityGateFailed, match="VNNI variant"):
        export_onnx.check_gate(good, good, {"mean": 0.98, "p1": 0.96, "min": 0.9})
    with pytest.raises(export_onnx.QualityGateFailed) as e:
        export_onnx.check_gate({"mean": 1.0, "p1": 1.0, "min": 0.999}, {"mean": 0.98, "p1": 0.9, "min": 0.5})
    msg = str(e.value)
    assert "fp32 min cosine" in msg and "int8 mean" in msg and "1st-percentile" in msg


def test_a_failing_model_is_not_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "minilm"
    out.mkdir()
    (out / "model.onnx").write_text("previous export")

    def failing_build(model_dir: Path, work: Path, alpha: float, vnni: bool) -> dict[str, object]:
        (work / "model.onnx").write_text("drifted")
        raise export_onnx.QualityGateFailed("int8 mean cosine vs fp32 0.9 < 0.99")

    monkeypatch.setattr(export_onnx, "build", failing_build)
    with pytest.raises(export_onnx.QualityGateFailed):
        export_onnx.export(tmp_path, out)
    assert (out / "model.onnx").read_text() == "previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["minilm"], "no temporary directory left"
    monkeypatch.setattr(export_onnx, "build", failing_build)
    assert export_onnx.main(["--model", str(tmp_path), "--output", str(out)]) == 1


def _tiny_model(path: Path, rng: np.random.Generator) -> None:
    """x[batch, seq, 8] -> LayerNorm-free two MatMuls with constant weights."""
    w1 = numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((16, 4)).astype(np.float32), "w2")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["y"])],
        "tiny",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", 8]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "s"]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "s", 4])],
        [w1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = {i.name for i in s.get_inputs()}
    return np.asarray(s.run(["y"], {k: v for k, v in feeds.items() if k in names})[0])


def test_smoothing_leaves_the_fp32_function_unchanged(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    src = tmp_path / "tiny.onnx"
    _tiny_model(src, rng)
    x = rng.standard_normal((2, 5, 8)).astype(np.float32)
    x[..., 3] *= 40  # an outlier channel, as MiniLM's hidden states have
    feeds: dict[str, np.ndarray] = {"x": x, "attention_mask": np.ones((2, 5), dtype=np.int64)}
    amax = activation_absmax(src, [feeds])
    assert set(amax) == {"x", "h"} and amax["x"][3] > 10
    model = onnx.load(str(src))
    assert smooth(model, amax, alpha=0.65) == 2
    onnx.save(model, str(tmp_path / "smoothed.onnx"))
    np.testing.assert_allclose(_run(tmp_path / "smoothed.onnx", feeds), _run(src, feeds), rtol=1e-4, atol=1e-4)
    info = quantize_int8(src, tmp_path / "int8.onnx", lambda: [feeds], alpha=0.65)
    assert info["smoothed_inputs"] == 2 and info["per_channel"] is True
    ops = [n.op_type for n in onnx.load(str(tmp_path / "int8.onnx")).graph.node]
    assert "MatMulInteger" in ops
    assert not (tmp_path / "int8.smoothed.onnx").exists()
    y8, y = _run(tmp_path / "int8.onnx", feeds), _run(src, feeds)
    cos = (y8 * y).sum(-1) / np.linalg.norm(y8, axis=-1) / np.linalg.norm(y, axis=-1)
    assert cos.min() > 0.95
    assert _weight_types(tmp_path / "int8.onnx") == {TensorProto.UINT8}
    info = quantize_int8(src, tmp_path / "s8.onnx", lambda: [feeds], alpha=0.65, weights="int8")
    assert info["weight_type"] == "int8" and _weight_types(tmp_path / "s8.onnx") == {TensorProto.INT8}
    with pytest.raises(ValueError, match="weights"):
        quantize_int8(src, tmp_path / "x.onnx", lambda: [feeds], weights="int4")
