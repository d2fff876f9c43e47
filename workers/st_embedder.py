"""all-MiniLM-L6-v2 through sentence-transformers, at the model's own speed.

Texts are tokenized once (without truncation, to count the ones over 256
tokens), truncated exactly as sentence-transformers truncates, sorted by
length and cut into batches under a token budget, so padding costs little.
The transformer and pooling are sentence-transformers' own modules, so the
embeddings equal ``SentenceTransformer.encode(..., normalize_embeddings=True)``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from bus.constants import EMBEDDING_DIM, MAX_SEQ_LENGTH
from bus.errors import TransientError
from models import source
from workers.device import MIN_COSINE, candidate_precision, pick_device
from workers.embedder import Encoded
from workers.limits import MemoryBudget
from workers.probe import PROBE_TEXTS

log = logging.getLogger(__name__)

CUT_CHARS = 20_000
"""Texts longer than this are tokenized from a prefix cut at a space: far
past 256 tokens, so the truncated result is the same at a fraction of the cost."""
CPU_TOKEN_BUDGET = 4096
"""Tokens per batch on a CPU. Measured on an Intel Xeon: 4k-8k best; on an
AMD EPYC with AVX-512 (2 threads, the Rust benchmark's 1,001 texts): 2k-4k
best, 8k 15-20% slower in fp32 and bf16 (its feed-forward activations, 50 MB,
fall out of the caches). 4k is good on both."""
GPU_MAX_TOKEN_BUDGET = 1 << 18
MIN_TOKEN_BUDGET = MAX_SEQ_LENGTH
MAX_PADDING = 0.2
PADDING_SLACK = 256
"""Padding tokens always allowed: below this, one more forward pass costs
more than the padding (measured: a pass costs as much as ~60 tokens on an
idle CPU, ~150 under load)."""
MAX_BATCH = {"cpu": 1024, "cuda": 4096, "mps": 2048}


def bytes_per_token(seq_len: int, precision: str) -> int:
    """Peak activation bytes per token of one layer of MiniLM (384 wide, 12
    heads, 1536 intermediate) at a padded length: hidden copies, the
    intermediate projection and the attention scores."""
    width = 2 if precision in ("fp16", "bf16") else 4
    return width * (8 * 384 + 2 * 1536 + 3 * 12 * seq_len)


def _is_oom(e: BaseException) -> bool:
    return "out of memory" in str(e).lower() or type(e).__name__ == "OutOfMemoryError"


class SentenceTransformerEmbedder:
    """``Embedder`` over a local sentence-transformers model directory."""

    def __init__(
        self,
        model_dir: Path | None = None,
        device: str = "auto",
        precision: str = "auto",
        threads: int | None = None,
        memory: MemoryBudget | None = None,
        token_budget: int | None = None,
    ) -> None:
        source.offline()
        import torch
        from sentence_transformers import SentenceTransformer
        from tokenizers import Tokenizer

        self._torch = torch
        if threads:
            torch.set_num_threads(threads)
        directory = model_dir or source.default_model_dir()
        self.model_id = source.model_id(directory)
        self.device = pick_device(device)
        self.model = SentenceTransformer(str(directory), device=self.device)
        self.model.eval()
        self.max_len = int(self.model.max_seq_length or MAX_SEQ_LENGTH)
        backend = self.model.tokenizer.backend_tokenizer
        self.tokenizer = Tokenizer.from_str(backend.to_str())
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.pad_id = int(self.model.tokenizer.pad_token_id or 0)
        self.memory = memory or MemoryBudget()
        self.max_batch = MAX_BATCH.get(self.device, 1024)
        self.precision = "fp32"
        self.precision_cosine = 1.0
        self.token_budget = token_budget or CPU_TOKEN_BUDGET
        self._choose_precision(candidate_precision(self.device, precision), explicit=precision != "auto")
        self.token_budget = token_budget or self._default_token_budget()
        log.info(
            "model %s on %s, precision %s (min cosine to fp32 %.6f), token budget %d",
            self.model_id,
            self.device,
            self.precision,
            self.precision_cosine,
            self.token_budget,
        )

    # -- precision ---------------------------------------------------------
    def _autocast(self) -> AbstractContextManager[Any]:
        if self.precision == "bf16":
            return self._torch.autocast(self.device, dtype=self._torch.bfloat16)
        return nullcontext()

    def _choose_precision(self, candidate: str, explicit: bool) -> None:
        """Use ``candidate`` if its probe embeddings stay within MIN_COSINE of fp32
        (always, when asked for explicitly); fall back to fp32 otherwise."""
        if candidate == "fp32":
            return
        reference = self.encode(PROBE_TEXTS).embeddings
        self._set_precision(candidate)
        got = self.encode(PROBE_TEXTS).embeddings
        cosine = float((reference * got).sum(axis=1).min())
        self.precision_cosine = cosine
        if cosine < MIN_COSINE and not explicit:
            log.warning("%s gives min cosine %.6f to fp32 (< %s): using fp32", candidate, cosine, MIN_COSINE)
            self._set_precision("fp32")
            self.precision_cosine = 1.0

    def _set_precision(self, precision: str) -> None:
        if precision == "fp16":
            self.model.half()
        elif self.precision == "fp16":
            self.model.float()
        self.precision = precision

    def _default_token_budget(self) -> int:
        free = self._free_accelerator_bytes()
        if free is None:
            return CPU_TOKEN_BUDGET
        fit = int(free * 0.5) // bytes_per_token(self.max_len, self.precision)
        return max(MIN_TOKEN_BUDGET, min(GPU_MAX_TOKEN_BUDGET, fit))

    def _free_accelerator_bytes(self) -> int | None:
        torch = self._torch
        try:
            if self.device == "cuda":
                return int(torch.cuda.mem_get_info()[0])
            if self.device == "mps":
                return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
        except (AttributeError, RuntimeError):
            return 1 << 30
        return None

    # -- tokenization ------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> tuple[list[list[int]], np.ndarray]:
        """Token ids as sentence-transformers feeds them, and which were truncated."""
        cut = [_cut(t) for t in texts]
        ids = [e.ids for e in self.tokenizer.encode_batch(cut)]
        for i, (a, b) in enumerate(zip(cut, texts, strict=True)):
            if a is not b and len(ids[i]) <= self.max_len:  # the prefix was not enough
                ids[i] = self.tokenizer.encode(b).ids
        truncated = np.array([len(x) > self.max_len for x in ids], dtype=bool)
        # [CLS] t1 .. tn [SEP] -> [CLS] t1 .. t(max-2) [SEP], as truncation="longest_first" does.
        ids = [x if len(x) <= self.max_len else [*x[: self.max_len - 1], x[-1]] for x in ids]
        return ids, truncated

    # -- inference ---------------------------------------------------------
    def encode(self, texts: Sequence[str]) -> Encoded:
        ids, truncated = self.tokenize(texts)
        out = np.empty((len(texts), EMBEDDING_DIM), dtype=np.float32)
        for idx in self._batches(ids):
            out[idx] = self._forward_with_backoff([ids[i] for i in idx])
        return Encoded(out, truncated)

    def _batch_budget(self, seq_len: int) -> int:
        per_token = bytes_per_token(seq_len, self.precision)
        if self.device != "cpu":  # activations live in accelerator memory, not in RSS
            return self.token_budget
        return self.memory.fit_tokens(self.token_budget, per_token, MIN_TOKEN_BUDGET)

    def _batches(self, ids: list[list[int]]) -> Iterator[np.ndarray]:
        """Longest first; a batch ends at the token budget, or before a text so
        much shorter that padding would pass ``MAX_PADDING`` of the batch (and
        ``PADDING_SLACK`` tokens)."""
        order = np.argsort([-len(x) for x in ids], kind="stable")
        pos = 0
        while pos < len(order):
            seq_len = len(ids[order[pos]])
            limit = min(self.max_batch, max(1, self._batch_budget(seq_len) // seq_len), len(order) - pos)
            count, real = 1, seq_len
            while count < limit:
                nxt = len(ids[order[pos + count]])
                padding = seq_len * (count + 1) - (real + nxt)
                if padding > max(MAX_PADDING * seq_len * (count + 1), PADDING_SLACK):
                    break
                count, real = count + 1, real + nxt
            yield order[pos : pos + count]
            pos += count

    def _forward_with_backoff(self, batch: list[list[int]]) -> np.ndarray:
        """Embed one batch; on out-of-memory halve the budget and split the batch."""
        try:
            return self._forward(batch)
        except (RuntimeError, MemoryError) as e:
            if not _is_oom(e):
                raise
            self._release_cache()
            if len(batch) == 1:
                raise TransientError(f"out of memory on {self.device} embedding one text") from None
            self.token_budget = max(MIN_TOKEN_BUDGET, self.token_budget // 2)
            log.warning("out of memory on %s: token budget now %d", self.device, self.token_budget)
            half = len(batch) // 2
            return np.concatenate([self._forward_with_backoff(batch[:half]), self._forward_with_backoff(batch[half:])])

    def _release_cache(self) -> None:
        torch = self._torch
        if self.device == "cuda":
            torch.cuda.empty_cache()
        elif self.device == "mps":
            torch.mps.empty_cache()

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        torch = self._torch
        seq_len = max(len(x) for x in batch)
        input_ids = np.full((len(batch), seq_len), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), seq_len), dtype=np.int64)
        for r, x in enumerate(batch):
            input_ids[r, : len(x)] = x
            mask[r, : len(x)] = 1
        ids_t = torch.from_numpy(input_ids).to(self.device)
        features = {
            "input_ids": ids_t,
            "token_type_ids": torch.zeros_like(ids_t),
            "attention_mask": torch.from_numpy(mask).to(self.device),
            "modality": "text",
        }
        with torch.inference_mode(), self._autocast():
            emb = self.model(features)["sentence_embedding"]
        emb = torch.nn.functional.normalize(emb.float(), p=2, dim=1)
        return emb.cpu().numpy()


def _cut(text: str) -> str:
    if len(text) <= CUT_CHARS:
        return text
    at = max(text.rfind(" ", 0, CUT_CHARS), text.rfind("\n", 0, CUT_CHARS))
    return text[:at] if at > 0 else text
