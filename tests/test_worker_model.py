"""The real model: embeddings equal sentence-transformers' own, truncation at
256 tokens as sentence-transformers does it, precision choice, out-of-memory
backoff, and the CUDA/MPS paths where that hardware exists. One model
instance serves the whole module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bus.constants import MAX_SEQ_LENGTH
from bus.messages import Job
from bus.transport import Delivery
from workers import device as devmod
from workers import st_embedder
from workers.limits import MemoryBudget
from workers.paths import DataRoots, fingerprint
from workers.pipeline import EmbedPipeline
from workers.st_embedder import CUT_CHARS, MIN_TOKEN_BUDGET, SentenceTransformerEmbedder
from workers.writer import Provenance, read_metadata

pytestmark = pytest.mark.slow

LONG = " ".join(f"Sentence {i} about rockets, sourdough and borrow checkers." for i in range(80))
TEXTS = [
    "hello world",
    "",
    "   ",
    "Grüße aus München 🍺",
    "東京タワーは赤い",
    "lol",
    LONG,
    LONG[: len(LONG) // 2],
    "hello world",
    "def main():\n    print('hi')",
] + [f"short reply number {i}" for i in range(40)]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def emb() -> Iterator[SentenceTransformerEmbedder]:
    e = SentenceTransformerEmbedder(device="cpu", precision="fp32")
    yield e


def reference(emb: SentenceTransformerEmbedder, texts: list[str]) -> np.ndarray:
    assert emb.precision == "fp32"
    return np.asarray(emb.model.encode(texts, normalize_embeddings=True, batch_size=16))


def test_embeddings_equal_sentence_transformers_including_long_texts(emb: SentenceTransformerEmbedder) -> None:
    got = emb.encode(TEXTS)
    assert got.embeddings.shape == (len(TEXTS), 384) and got.embeddings.dtype == np.float32
    assert cosines(got.embeddings, reference(emb, TEXTS)).min() >= 0.9999
    assert np.allclose(np.linalg.norm(got.embeddings, axis=1), 1.0, atol=1e-5)


def test_truncation_matches_sentence_transformers_token_for_token(emb: SentenceTransformerEmbedder) -> None:
    ids, truncated = emb.tokenize(TEXTS)
    features = emb.model.preprocess(TEXTS)
    for i, text in enumerate(TEXTS):
        row = features["input_ids"][i][features["attention_mask"][i] == 1].tolist()
        assert ids[i] == row, text[:40]
    full = [len(emb.model.tokenizer(t, truncation=False)["input_ids"]) for t in TEXTS]
    assert truncated.tolist() == [n > MAX_SEQ_LENGTH for n in full]
    assert truncated[TEXTS.index(LONG)] and len(ids[TEXTS.index(LONG)]) == MAX_SEQ_LENGTH


def test_huge_texts_are_cut_before_tokenizing_with_the_same_result(emb: SentenceTransformerEmbedder) -> None:
    huge = "word " * (CUT_CHARS // 2)
    long_words = " ".join("x" * 150 for _ in range(300))  # one [UNK] per 150 chars: the prefix is too short
    ids, truncated = emb.tokenize([huge, long_words])
    for i, text in enumerate([huge, long_words]):
        expected = emb.model.preprocess([text])["input_ids"][0].tolist()
        assert ids[i] == expected
    assert truncated.tolist() == [True, True]


def test_batches_respect_the_token_budget_and_the_memory_ceiling(emb: SentenceTransformerEmbedder) -> None:
    ids, _ = emb.tokenize(TEXTS)
    seen = []
    for batch in emb._batches(ids):
        longest = max(len(ids[i]) for i in batch)
        padded, real = longest * len(batch), sum(len(ids[i]) for i in batch)
        assert padded <= emb.token_budget or len(batch) == 1
        assert padded - real <= max(st_embedder.MAX_PADDING * padded, st_embedder.PADDING_SLACK)
        seen += batch.tolist()
    assert sorted(seen) == list(range(len(TEXTS)))
    saved = emb.memory
    try:
        emb.memory = MemoryBudget(ceiling=1)  # no headroom: smallest batches
        assert emb._batch_budget(MAX_SEQ_LENGTH) == MIN_TOKEN_BUDGET
    finally:
        emb.memory = saved


def test_out_of_memory_halves_the_budget_and_still_embeds_everything(
    emb: SentenceTransformerEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = emb._forward
    seen: list[int] = []

    def forward(batch: list[list[int]]) -> np.ndarray:
        seen.append(len(batch))
        if len(batch) > 8:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(batch)

    monkeypatch.setattr(emb, "_forward", forward)
    monkeypatch.setattr(emb, "token_budget", 4096)
    got = emb.encode(TEXTS)
    assert emb.token_budget < 4096 and max(seen) > 8
    assert cosines(got.embeddings, reference(emb, TEXTS)).min() >= 0.9999


def test_bf16_is_kept_only_within_the_cosine_bound(
    emb: SentenceTransformerEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    try:
        emb._choose_precision("bf16", explicit=False)
        if emb.precision == "bf16":
            assert emb.precision_cosine >= devmod.MIN_COSINE
        monkeypatch.setattr(st_embedder, "MIN_COSINE", 1.5)  # impossible: must fall back
        emb._set_precision("fp32")
        emb._choose_precision("bf16", explicit=False)
        assert emb.precision == "fp32" and emb.precision_cosine == 1.0
    finally:
        emb._set_precision("fp32")


@pytest.mark.skipif(not devmod.cpu_has_fast_bf16(), reason="this CPU has neither AVX512-BF16 nor AMX")
def test_bf16_on_this_cpu_is_close_to_fp32(emb: SentenceTransformerEmbedder) -> None:
    ref = emb.encode(TEXTS).embeddings
    try:
        emb._set_precision("bf16")
        got = emb.encode(TEXTS).embeddings
    finally:
        emb._set_precision("fp32")
    assert cosines(got, ref).min() >= devmod.MIN_COSINE


def test_pipeline_output_rows_equal_sentence_transformers(emb: SentenceTransformerEmbedder, tmp_path: Path) -> None:
    roots = DataRoots.create(tmp_path / "in", tmp_path / "out")
    rel = "chains/2024-01/s/f.parquet"
    path = roots.input_root / rel
    path.parent.mkdir(parents=True)
    column = [*TEXTS[:10], None, *TEXTS[10:]]
    pq.write_table(pa.table({"text": pa.array(column, pa.string())}), path, row_group_size=7)
    job = Job.create(rel, fingerprint(path), emb.model_id)
    pipe = EmbedPipeline(roots, emb, Provenance("w", "python", emb.device, emb.precision, "0"), chunk_rows=16)
    prepared = pipe.prepare(Delivery(job, "default", "1-0"))
    result = pipe.run(prepared, lambda: None)
    prepared.close()
    table = pq.read_table(roots.output_root / job.out)
    rows = table.column("row").to_pylist()
    assert 10 not in rows and len(rows) == len(TEXTS)
    got = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    assert cosines(got, reference(emb, [column[r] for r in rows])).min() >= 0.9999  # type: ignore[misc]
    meta = read_metadata(roots.output_root / job.out)
    assert meta["embedfleet.rows_truncated"] == "2" and meta["embedfleet.rows_null"] == "1"
    assert meta["embedfleet.rows_deduplicated"] == "1" and meta["embedfleet.precision"] == "fp32"
    assert result.counts.rows_empty == 2


# -- devices ------------------------------------------------------------------
def test_precision_candidates_per_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devmod, "cpu_has_fast_bf16", lambda: True)
    assert devmod.candidate_precision("cpu") == "bf16"
    monkeypatch.setattr(devmod, "cpu_has_fast_bf16", lambda: False)
    assert devmod.candidate_precision("cpu") == "fp32"
    assert devmod.candidate_precision("cuda") == "fp16" and devmod.candidate_precision("mps") == "fp16"
    assert devmod.candidate_precision("cpu", "bf16") == "bf16"
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        devmod.candidate_precision("cpu", "fp16")


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor: 0\nflags\t\t: fpu sse avx512f avx512_bf16\n")
    assert "avx512_bf16" in devmod.cpu_flags(info)
    assert devmod.cpu_flags(tmp_path / "missing") == set()


def test_requesting_an_absent_device_is_an_error() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: nothing absent to request")
    with pytest.raises(ValueError, match="--device cuda: not available"):
        devmod.pick_device("cuda")
    assert devmod.pick_device("cpu") == "cpu"


def _accelerator(name: str) -> bool:
    import torch

    if name == "cuda":
        return bool(torch.cuda.is_available())
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


@pytest.mark.parametrize("name", ["cuda", "mps"])
def test_accelerator_embeddings_match_cpu(name: str, emb: SentenceTransformerEmbedder) -> None:
    if not _accelerator(name):
        pytest.skip(f"no {name.upper()} device on this machine: the {name} path is exercised where one exists")
    gpu = SentenceTransformerEmbedder(device=name, precision="auto")
    assert gpu.device == name and gpu.precision in ("fp16", "fp32") and gpu.token_budget >= MIN_TOKEN_BUDGET
    got = gpu.encode(TEXTS).embeddings
    assert cosines(got, reference(emb, TEXTS)).min() >= 0.999
    assert devmod.pick_device("auto") in ("mps", "cuda")
