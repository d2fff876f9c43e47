"""``python -m models.export_onnx``: the ONNX model directory the Rust worker runs.

Writes into ``--output`` (default ``models/onnx/minilm``):

- ``model.onnx``: fp32, dynamic batch and sequence axes. Inputs ``input_ids``,
  ``attention_mask``, ``token_type_ids`` (int64, ``[batch, seq]``); output
  ``sentence_embedding`` (float32, ``[batch, 384]``): the transformer's token
  embeddings mean-pooled over the attention mask, exactly as
  sentence-transformers' Pooling module does, and NOT yet L2-normalised (the
  worker normalises; doing it twice is harmless). Pooling inside the graph
  saves copying ``batch x seq x 384`` floats out of the runtime.
- ``model_int8.onnx``: see ``models/onnx_quant.py`` (uint8 weights: right on
  every CPU).
- ``model_int8_vnni.onnx``: the same with int8 weights, for CPUs with VNNI,
  where it is the faster one; written only when the exporting CPU has VNNI
  (so that its quality gate runs on the kernels that will run it), and
  chosen by the Rust worker only on such a CPU.
- ``tokenizer.json``: the model's tokenizer with truncation at 256 tokens (as
  sentence-transformers truncates, not the file's 128) and no fixed padding.
- ``1_Pooling/config.json``, ``sentence_bert_config.json``: copied as they are.
- ``embedfleet_model.json``: the manifest: ``weights_sha256`` of the source
  ``model.safetensors`` (so ``models.source.model_id`` gives this directory
  the same model id as the PyTorch one), files, shapes, the quality figures.

Quality gate, on the fixed sample of ``models/sample_texts.py``: fp32 ONNX
against sentence-transformers, minimum cosine at least 0.9999; int8 against
fp32, mean at least 0.99 and 1st percentile at least 0.95 (each int8
variant). A model that fails is not written: the directory is built aside and
swapped in only when every gate passes, and the command exits 1 saying which
figure failed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from bus.constants import EMBEDDING_DIM, MAX_SEQ_LENGTH, MODEL_NAME
from models import sample_texts
from models.onnx_quant import DEFAULT_ALPHA, Feeds, quantize_int8
from models.source import ONNX_MANIFEST, default_model_dir, model_id, offline, weights_sha256
from workers.device import CPU_VNNI_FLAGS, cpu_has_vnni

FP32_FILE = "model.onnx"
INT8_FILE = "model_int8.onnx"
INT8_VNNI_FILE = "model_int8_vnni.onnx"
INT8_FILES = {"int8": INT8_FILE, "int8_vnni": INT8_VNNI_FILE}
TOKENIZER_FILE = "tokenizer.json"
INPUTS = ["input_ids", "attention_mask", "token_type_ids"]
OUTPUT = "sentence_embedding"
OPSET = 17

GATE_FP32_MIN = 0.9999
"""fp32 ONNX against sentence-transformers: smallest cosine allowed."""
GATE_INT8_MEAN = 0.99
"""int8 against fp32: smallest mean cosine allowed."""
GATE_INT8_P1 = 0.95
"""int8 against fp32: smallest 1st-percentile cosine allowed."""


class QualityGateFailed(Exception):
    """An exported model drifts too far from its reference; nothing was written."""


def resolve_model_dir(spec: str | None) -> Path:
    """A sentence-transformers directory, or an installed package holding one."""
    if spec is None:
        return default_model_dir()
    p = Path(spec)
    if p.is_dir():
        return p
    try:
        mod = importlib.import_module(spec.replace("-", "_"))
    except ImportError:
        raise FileNotFoundError(f"{spec}: neither a model directory nor an installed package") from None
    if hasattr(mod, "get_model_path"):
        return Path(mod.get_model_path())
    return Path(mod.__file__ or ".").parent / "model"


HARMLESS_EXPORT_WARNINGS = (
    # (category name, module regex, message start): why it does not apply here.
    # We keep the TorchScript exporter on purpose (dynamo=False): its graph is
    # the one the quality gate and the Rust worker were measured on.
    ("DeprecationWarning", r"", "You are using the legacy TorchScript-based ONNX export"),
    ("DeprecationWarning", r"torch\.onnx", "The feature will be removed"),
    # transformers compares the mask's length with the key length to pad it;
    # in an encoder both are the sequence length, for every input, so the
    # traced constant (no padding) generalises. The dynamic-axes test and the
    # quality gate (texts of every length) check it.
    ("TracerWarning", r"transformers\.masking_utils", "Converting a tensor to a Python boolean"),
    # The mask function indexes with aranges over the batch and the sequence:
    # never negative.
    ("UserWarning", r"torch\.onnx", "Exporting aten::index operator of advanced indexing"),
)
"""The tracer's and exporter's warnings that are known not to apply to this
graph: silenced by category, module and message, nothing broader."""


@contextmanager
def harmless_export_warnings_silenced() -> Iterator[None]:
    """Around ``torch.onnx.export``: ``HARMLESS_EXPORT_WARNINGS`` are not
    printed at the user; every other warning is."""
    import torch

    categories: dict[str, type[Warning]] = {
        "DeprecationWarning": DeprecationWarning,
        "UserWarning": UserWarning,
        "TracerWarning": torch.jit.TracerWarning,
    }
    with warnings.catch_warnings():
        for category, module, message in HARMLESS_EXPORT_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=categories[category], module=module)
        yield


def export_fp32(model_dir: Path, out: Path) -> None:
    """Trace the transformer plus mean pooling to ONNX (dynamic axes)."""
    import torch
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()

    class MeanPooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            tokens = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)[0]
            mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
            return (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    example = tuple(torch.ones(2, 16, dtype=torch.long) for _ in INPUTS)
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUTS} | {OUTPUT: {0: "batch"}}
    with torch.no_grad(), harmless_export_warnings_silenced():
        torch.onnx.export(
            MeanPooled().eval(),
            example,
            str(out),
            dynamo=False,
            input_names=INPUTS,
            output_names=[OUTPUT],
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
        )


def write_tokenizer(model_dir: Path, out: Path) -> None:
    """The model's tokenizer.json with sentence-transformers' truncation, no padding."""
    tok = json.loads((model_dir / TOKENIZER_FILE).read_text(encoding="utf-8"))
    tok["truncation"] = {"direction": "Right", "max_length": MAX_SEQ_LENGTH, "strategy": "LongestFirst", "stride": 0}
    tok["padding"] = None
    out.write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")


def batches(tokenizer_path: Path, texts: list[str], size: int = 32) -> Iterator[tuple[np.ndarray, Feeds]]:
    """Length-sorted batches of model inputs, with the row indices they hold."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    order = np.argsort([len(t) for t in texts], kind="stable")
    for start in range(0, len(texts), size):
        idx = order[start : start + size]
        enc = tok.encode_batch([texts[i] for i in idx])
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        yield idx, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def embed_onnx(model: Path, tokenizer: Path, texts: list[str], threads: int = 2) -> np.ndarray:
    """Normalised embeddings of ``texts`` from an ONNX model."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    out = np.zeros((len(texts), EMBEDDING_DIM), dtype=np.float32)
    for idx, feeds in batches(tokenizer, texts):
        out[idx] = session.run([OUTPUT], feeds)[0]
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def embed_reference(model_dir: Path, texts: list[str]) -> np.ndarray:
    """sentence-transformers' own normalised embeddings (the reference)."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model_dir), device="cpu")
    return np.asarray(st.encode(texts, normalize_embeddings=True, batch_size=32, convert_to_numpy=True))


def cosine_stats(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Mean, 1st percentile and minimum of row-wise cosines of normalised rows."""
    c = np.sum(a * b, axis=1)
    return {"mean": float(c.mean()), "p1": float(np.percentile(c, 1)), "min": float(c.min())}


def int8_failures(int8: dict[str, float], name: str = "int8") -> list[str]:
    """The int8 gate's figures below their bound, in words."""
    failures = []
    if int8["mean"] < GATE_INT8_MEAN:
        failures.append(f"{name} mean cosine vs fp32 {int8['mean']:.4f} < {GATE_INT8_MEAN}")
    if int8["p1"] < GATE_INT8_P1:
        failures.append(f"{name} 1st-percentile cosine vs fp32 {int8['p1']:.4f} < {GATE_INT8_P1}")
    return failures


def check_gate(fp32: dict[str, float], int8: dict[str, float], vnni: dict[str, float] | None = None) -> None:
    """Raise ``QualityGateFailed`` naming every figure below its bound."""
    failures = []
    if fp32["min"] < GATE_FP32_MIN:
        failures.append(f"fp32 min cosine vs sentence-transformers {fp32['min']:.6f} < {GATE_FP32_MIN}")
    failures += int8_failures(int8)
    if vnni is not None:
        failures += int8_failures(vnni, "int8 (VNNI variant)")
    if failures:
        raise QualityGateFailed("; ".join(failures))


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build(model_dir: Path, work: Path, alpha: float, vnni: bool) -> dict[str, Any]:
    """Export, quantise and grade into ``work``; returns the manifest.
    ``vnni``: also write and grade the int8-weight variant for VNNI CPUs."""
    export_fp32(model_dir, work / FP32_FILE)
    write_tokenizer(model_dir, work / TOKENIZER_FILE)
    tok = work / TOKENIZER_FILE
    calib = sample_texts.calibration()

    def quantize(out: Path, weights: str) -> dict[str, object]:
        return quantize_int8(work / FP32_FILE, out, lambda: (f for _, f in batches(tok, calib)), alpha, weights)

    quant = {"int8": quantize(work / INT8_FILE, "uint8")}
    if vnni:
        quant["int8_vnni"] = quantize(work / INT8_VNNI_FILE, "int8")
    texts = sample_texts.quality_sample()
    ref = embed_reference(model_dir, texts)
    fp32 = embed_onnx(work / FP32_FILE, tok, texts)
    fp32_stats = cosine_stats(fp32, ref)
    stats = {"int8": cosine_stats(embed_onnx(work / INT8_FILE, tok, texts), fp32)}
    if vnni:
        stats["int8_vnni"] = cosine_stats(embed_onnx(work / INT8_VNNI_FILE, tok, texts), fp32)
    check_gate(fp32_stats, stats["int8"], stats.get("int8_vnni"))
    for sub in ("1_Pooling/config.json", "sentence_bert_config.json"):
        (work / sub).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model_dir / sub, work / sub)
    return manifest(model_dir, work, quant, len(texts), fp32_stats, stats)


def manifest(
    model_dir: Path,
    work: Path,
    quant: dict[str, dict[str, object]],
    n: int,
    fp32: dict[str, float],
    int8: dict[str, dict[str, float]],
) -> dict[str, Any]:
    import onnx
    import onnxruntime
    import torch

    return {
        "format_version": 1,
        "model_name": MODEL_NAME,
        "model_id": model_id(model_dir),
        "weights_sha256": weights_sha256(model_dir),
        "embedding_dim": EMBEDDING_DIM,
        "max_seq_length": MAX_SEQ_LENGTH,
        "inputs": INPUTS,
        "output": OUTPUT,
        "output_pooling": "mean over attention_mask, not normalised",
        "normalize": True,
        "tokenizer": TOKENIZER_FILE,
        "variants": {
            "fp32": {"file": FP32_FILE, "sha256": _sha256(work / FP32_FILE)},
            **{
                name: {
                    "file": INT8_FILES[name],
                    "sha256": _sha256(work / INT8_FILES[name]),
                    "quantization": q,
                    **({"cpu_flags_any": list(CPU_VNNI_FLAGS)} if name == "int8_vnni" else {}),
                }
                for name, q in quant.items()
            },
        },
        "quality": {
            "sample_texts": n,
            "fp32_vs_sentence_transformers": fp32,
            **{f"{name}_vs_fp32": st for name, st in int8.items()},
            "gates": {"fp32_min": GATE_FP32_MIN, "int8_mean": GATE_INT8_MEAN, "int8_p1": GATE_INT8_P1},
        },
        "exported_with": {
            "opset": OPSET,
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
    }


def export(model_dir: Path, output: Path, alpha: float = DEFAULT_ALPHA, vnni: bool | None = None) -> dict[str, Any]:
    """Build the ONNX directory aside and swap it into ``output`` if it passes.
    ``vnni``: write the VNNI variant (default: when this CPU has VNNI)."""
    output = output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    work = output.parent / f".{output.name}.tmp-{os.getpid()}"
    old = output.parent / f".{output.name}.old-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        meta = build(model_dir, work, alpha, cpu_has_vnni() if vnni is None else vnni)
        (work / ONNX_MANIFEST).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        if output.exists():
            output.rename(old)
        work.rename(output)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return meta


def main(argv: list[str] | None = None) -> int:
    from bus.cli_options import DefaultsHelpFormatter

    p = argparse.ArgumentParser(
        prog="python -m models.export_onnx",
        description=__doc__.split("\n")[0],
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument("--model", help="sentence-transformers directory or installed package (default: the PyPI model)")
    p.add_argument("--output", type=Path, default=Path("models/onnx/minilm"), help="directory to write")
    p.add_argument("--smooth-alpha", type=float, default=DEFAULT_ALPHA, help="int8 smoothing strength (0: none)")
    a = p.parse_args(argv)
    offline()
    try:
        meta = export(resolve_model_dir(a.model), a.output, a.smooth_alpha)
    except QualityGateFailed as e:
        print(f"export_onnx: quality gate failed, nothing written: {e}", file=sys.stderr)
        return 1
    except FileNotFoundError as e:
        print(f"export_onnx: {e}", file=sys.stderr)
        return 2
    q = meta["quality"]
    print(
        f"wrote {a.output} ({meta['model_id']}): fp32 min cosine {q['fp32_vs_sentence_transformers']['min']:.6f}, "
        f"int8 mean {q['int8_vs_fp32']['mean']:.4f} p1 {q['int8_vs_fp32']['p1']:.4f}"
        + (
            f", int8 VNNI variant mean {q['int8_vnni_vs_fp32']['mean']:.4f} p1 {q['int8_vnni_vs_fp32']['p1']:.4f}"
            if "int8_vnni_vs_fp32" in q
            else " (no VNNI on this CPU: no VNNI variant)"
        )
        + f" on {q['sample_texts']} texts"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
