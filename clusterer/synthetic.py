"""Planted clusters written exactly as a finished embedding run, for tests,
benchmarks and demos.

Cluster centres are drawn in groups (topics with sub-topics, as real text
has), cluster sizes are uneven, points are noisy copies of their centre
normalised to the unit sphere, and a share of points is uniform background
noise (label -1). Every cluster has its own vocabulary, so its texts carry
the words a keyword extractor should find.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bus.constants import EMBEDDING_DIM, META_PREFIX
from bus.messages import output_path

SYNTHETIC_MODEL = "synthetic@0000000000000000"


@dataclass(frozen=True)
class PlantedSpec:
    """Shape of a planted data set."""

    n: int
    clusters: int = 20
    dim: int = EMBEDDING_DIM
    noise_share: float = 0.05
    spread: float = 1.0
    """Norm of a point's offset from its centre (1.0: cosine ~0.5 within a cluster)."""
    group_size: int = 4
    seed: int = 0


def planted(spec: PlantedSpec) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors and their true labels (-1 for background noise)."""
    rng = np.random.default_rng(spec.seed)
    groups = -(-spec.clusters // spec.group_size)
    group_centres = _unit(rng.standard_normal((groups, spec.dim)))
    offsets = _unit(rng.standard_normal((spec.clusters, spec.dim)))
    centres = _unit(group_centres[np.arange(spec.clusters) // spec.group_size] + 0.8 * offsets)
    weights = 1.0 / np.sqrt(np.arange(1, spec.clusters + 1))
    n_noise = round(spec.n * spec.noise_share)
    sizes = np.floor(weights / weights.sum() * (spec.n - n_noise)).astype(int)
    sizes[0] += spec.n - n_noise - sizes.sum()
    labels = np.concatenate([np.full(n_noise, -1), np.repeat(np.arange(spec.clusters), sizes)])
    rng.shuffle(labels)
    x = np.empty((spec.n, spec.dim), dtype=np.float32)
    for start in range(0, spec.n, 100_000):
        lab = labels[start : start + 100_000]
        noise = rng.standard_normal((len(lab), spec.dim)).astype(np.float32)
        chunk = _unit(noise) * spec.spread
        member = lab >= 0
        chunk[member] += centres[lab[member]]
        chunk[~member] = _unit(noise[~member])
        x[start : start + len(lab)] = _unit(chunk)
    return x, labels


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def vocabulary(clusters: int, words: int = 8, seed: int = 0) -> list[list[str]]:
    """Distinct pronounceable pseudo-words, ``words`` per cluster."""
    rng = np.random.default_rng(seed + 1)
    cons, vows = list("bdfgklmnprstvz"), list("aeiou")
    seen: set[str] = set()
    out: list[list[str]] = []
    for _ in range(clusters):
        vocab: list[str] = []
        while len(vocab) < words:
            w = "".join(rng.choice(cons) + rng.choice(vows) for _ in range(3))
            if w not in seen:
                seen.add(w)
                vocab.append(w)
        out.append(vocab)
    return out


def texts_for(labels: np.ndarray, seed: int = 0) -> list[str]:
    """One short text per point, built from its cluster's words."""
    rng = np.random.default_rng(seed + 2)
    clusters = int(labels.max()) + 1 if len(labels) else 0
    vocab = vocabulary(clusters, seed=seed)
    filler = ["the", "and", "about", "really", "what", "with"]
    noise_words = [a + b for a in string.ascii_lowercase[:8] for b in string.ascii_lowercase[8:16]]
    out = []
    for lab in labels.tolist():
        pool = vocab[lab] if lab >= 0 else noise_words
        picks = rng.choice(len(pool), size=4, replace=False)
        words = [pool[i] for i in picks] + [filler[int(rng.integers(len(filler)))]]
        out.append(" ".join(words))
    return out


def write_run(
    root: Path,
    x: np.ndarray,
    texts: list[str],
    files: int = 4,
    model: str = SYNTHETIC_MODEL,
    with_ids: bool = True,
    row_group_size: int = 50_000,
) -> list[str]:
    """Write inputs under ``root/chains`` and outputs under ``root/embeddings``
    (input and output roots are both ``root``); returns the input paths."""
    bounds = np.linspace(0, len(x), files + 1).astype(int)
    rels = []
    for i in range(files):
        lo, hi = int(bounds[i]), int(bounds[i + 1])
        rel = f"chains/synthetic/sub{i % 3}/part-{i:04d}.parquet"
        _write_pair(root, rel, x[lo:hi], texts[lo:hi], lo, model, with_ids, row_group_size)
        rels.append(rel)
    return rels


def add_output(
    root: Path, rel: str, x: np.ndarray, texts: list[str], first_id: int, model: str = SYNTHETIC_MODEL
) -> None:
    """One more input under ``root/chains`` and its output, as a worker finishing a new file leaves them."""
    _write_pair(root, rel, x, texts, first_id, model, True, 50_000)


def _write_pair(
    root: Path, rel: str, x: np.ndarray, texts: list[str], first_id: int, model: str, with_ids: bool, rg: int
) -> None:
    n = len(x)
    ids = pa.array([f"t{first_id + i}" for i in range(n)])
    inp = root / rel
    inp.parent.mkdir(parents=True, exist_ok=True)
    cols = {"id": ids, "text": pa.array(texts)} if with_ids else {"text": pa.array(texts)}
    pq.write_table(pa.table(cols), inp, row_group_size=rg)
    st = inp.stat()
    out_cols: dict[str, pa.Array] = {"row": pa.array(np.arange(n, dtype=np.int64))}
    if with_ids:
        out_cols["id"] = ids
    out_cols["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])
    meta = {
        "format_version": "1",
        "model_id": model,
        "normalized": "true",
        "input_path": rel,
        "input_fingerprint": f"{st.st_size}-{st.st_mtime_ns}",
        "row_start": "0",
        "row_end": str(n),
        "rows_total": str(n),
        "rows_embedded": str(n),
    }
    out = root / output_path(rel, None)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_like_a_worker(pa.table(out_cols), out, {META_PREFIX + k: v for k, v in meta.items()}, rg)


def write_like_a_worker(table: pa.Table, out: Path, meta: dict[str, str], row_group_size: int | None = None) -> None:
    """Write an output as both workers do: provenance in the footer's key-value
    metadata, added after the rows (not in the Arrow schema's metadata)."""
    with pq.ParquetWriter(out, table.schema, compression="none") as w:
        w.write_table(table, row_group_size=row_group_size)
        w.add_key_value_metadata(meta)
