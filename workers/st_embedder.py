# Twin: rust/worker/src/batching.rs, rust/worker/src/tokenize.rs, rust/worker/src/model.rs (docs/parity.md)
"""all-MiniLM-L6-v2 through sentence-transformers, at the model's own speed.

Texts are tokenized once (without truncation, to count the ones over 256
tokens), truncated exactly as sentence-transformers truncates, sorted by
length and cut into batches under a token budget, so padding costs little.
The transformer and pooling are sentence-transformers' own modules, so the
embeddings equal ``SentenceTransformer.encode(..., normalize_embeddings=True)``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
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
        self.tokens = ModelTokenizer(Tokenizer.from_str(self.model.tokenizer.backend_tokenizer.to_str()), self.max_len)
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
        return self.tokens.tokenize(texts)

    def prepare(self, texts: Sequence[str]) -> None:
        """Tokenize texts ahead of ``encode`` (the pipeline's reader thread calls it)."""
        self.tokens.prepare(texts)

    # -- inference ---------------------------------------------------------
    def encode(self, texts: Sequence[str]) -> Encoded:
        ids, truncated = self.tokenize(texts)
        out = np.empty((len(texts), EMBEDDING_DIM), dtype=np.float32)
        if self.device == "cuda":
            self._encode_pipelined(ids, out)
            return Encoded(out, truncated)
        for idx in self._batches(ids):
            out[idx] = self._forward_with_backoff([ids[i] for i in idx])
        return Encoded(out, truncated)

    def _batch_budget(self, seq_len: int) -> int:
        per_token = bytes_per_token(seq_len, self.precision)
        if self.device != "cpu":  # activations live in accelerator memory, not in RSS
            return self.token_budget
        return self.memory.fit_tokens(self.token_budget, per_token, MIN_TOKEN_BUDGET)

    def _batches(self, ids: list[list[int]]) -> Iterator[np.ndarray]:
        return plan_batches([len(x) for x in ids], self.max_batch, self._batch_budget)

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
        return self._launch(batch).cpu().numpy()  # type: ignore[no-any-return]

    def _launch(self, batch: list[list[int]]) -> Any:
        """Start one batch on the device; its normalised embeddings as a device
        tensor (on CUDA the work is queued: ``.cpu()`` waits for it)."""
        torch = self._torch
        input_ids, mask = pad(batch, self.pad_id)
        cuda = self.device == "cuda"
        ids_t = _to_device(torch.from_numpy(input_ids), self.device, cuda)
        features = {
            "input_ids": ids_t,
            "token_type_ids": torch.zeros_like(ids_t),
            "attention_mask": _to_device(torch.from_numpy(mask), self.device, cuda),
            "modality": "text",
        }
        with torch.inference_mode(), self._autocast():
            emb = self.model(features)["sentence_embedding"]
        return torch.nn.functional.normalize(emb.float(), p=2, dim=1)

    def _encode_pipelined(self, ids: list[list[int]], out: np.ndarray) -> None:
        """CUDA: batch n+1 is padded, copied from pinned memory without
        blocking and queued before batch n's result is copied back, so the
        GPU never waits for the host between batches. Out of memory at
        launch falls back to the halving path."""
        pending: tuple[np.ndarray, Any] | None = None
        for idx in self._batches(ids):
            batch = [ids[i] for i in idx]
            try:
                emb = self._launch(batch)
            except (RuntimeError, MemoryError) as e:
                if not _is_oom(e):
                    raise
                emb = None
            if pending is not None:
                out[pending[0]] = pending[1].cpu().numpy()
                pending = None
            if emb is None:
                out[idx] = self._forward_with_backoff(batch)
            else:
                pending = (idx, emb)
        if pending is not None:
            out[pending[0]] = pending[1].cpu().numpy()


def _to_device(t: Any, device: str, pinned: bool) -> Any:
    """``t`` on ``device``; on CUDA through pinned host memory (torch's caching
    host allocator reuses it) with a non-blocking copy."""
    if pinned:
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


class ModelTokenizer:
    """The model's tokenizer, truncating exactly as sentence-transformers does
    (shared by the real embedder and the simulated device's).

    ``prepare`` tokenizes texts ahead, on any thread (the pipeline's reader,
    while the device computes the previous chunk); ``tokenize`` takes those
    results and tokenizes only the rest."""

    MAX_READY = 1 << 18
    """Texts held tokenized ahead at most (past it the held ones are dropped:
    they were deduplicated or answered by the reuse store)."""

    def __init__(self, tokenizer: Any, max_len: int = MAX_SEQ_LENGTH) -> None:
        self.tokenizer = tokenizer
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.max_len = max_len
        self.fast = FastWordPiece.of(tokenizer)
        self._ready: dict[str, tuple[list[int], bool]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_dir(cls, model_dir: Path) -> ModelTokenizer:
        """From a sentence-transformers directory's ``tokenizer.json`` (no torch)."""
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(model_dir / "tokenizer.json")))

    def prepare(self, texts: Sequence[str]) -> None:
        """Tokenize ``texts`` now for a later ``tokenize``."""
        if not texts:
            return
        ids, truncated = self._tokenize(texts)
        with self._lock:
            if len(self._ready) + len(texts) > self.MAX_READY:
                self._ready.clear()
            self._ready.update(zip(texts, zip(ids, truncated.tolist(), strict=True), strict=True))

    def tokenize(self, texts: Sequence[str]) -> tuple[list[list[int]], np.ndarray]:
        """Token ids as sentence-transformers feeds them, and which were truncated."""
        with self._lock:
            got = [self._ready.pop(t, None) for t in texts] if self._ready else [None] * len(texts)
        missing = [i for i, g in enumerate(got) if g is None]
        if len(missing) == len(texts):
            return self._tokenize(texts)
        ids: list[list[int]] = [g[0] if g is not None else [] for g in got]
        truncated = np.array([g is not None and g[1] for g in got], dtype=bool)
        if missing:
            more, cut = self._tokenize([texts[i] for i in missing])
            for k, i in enumerate(missing):
                ids[i] = more[k]
            truncated[missing] = cut
        return ids, truncated

    def _tokenize(self, texts: Sequence[str]) -> tuple[list[list[int]], np.ndarray]:
        """``FastWordPiece`` where it applies, then one batch call of the
        tokenizers library (which encodes without the GIL) for the rest."""
        fast = self.fast
        ids: list[list[int]] = [fast.ids(t) for t in texts] if fast is not None else [[] for _ in texts]
        slow = [i for i, x in enumerate(ids) if not x]
        if slow:
            cut = [_cut(texts[i]) for i in slow]
            for i, e in zip(slow, self.tokenizer.encode_batch(cut), strict=True):
                ids[i] = e.ids
            for i, a in zip(slow, cut, strict=True):
                if a is not texts[i] and len(ids[i]) <= self.max_len:  # the prefix was not enough
                    ids[i] = self.tokenizer.encode(texts[i]).ids
        truncated = np.array([len(x) > self.max_len for x in ids], dtype=bool)
        # [CLS] t1 .. tn [SEP] -> [CLS] t1 .. t(max-2) [SEP], as truncation="longest_first" does.
        m = self.max_len
        ids = [x if len(x) <= m else [*x[: m - 1], x[-1]] for x in ids]
        return ids, truncated


_SPACED_PUNCTUATION = str.maketrans({c: f" {c} " for c in map(chr, range(33, 127)) if not c.isalnum()})
"""Printable ASCII that BERT's pre-tokenizer splits off as punctuation, spaced
out so that ``split()`` yields the pre-tokenizer's words."""


class FastWordPiece:
    """BERT tokenization of short printable-ASCII texts whose words are all
    whole vocabulary entries, in a few microseconds instead of the library's
    ~30 (its normalizer and pre-tokenizer dominate on short texts).

    For such a text the library's steps reduce to: lowercase (no accents to
    strip, no control characters, no CJK), split at spaces and at every
    ASCII punctuation character (BERT counts all non-alphanumeric printable
    ASCII as punctuation), and WordPiece, whose greedy longest match takes a
    word that is itself in the vocabulary whole. Any other text (non-ASCII,
    a control character, a word needing ``##`` pieces, longer than
    ``MAX_CHARS``) returns ``[]`` and goes to the library.
    ``tests/test_worker_datapath.py`` checks equality with the library."""

    MAX_CHARS = 1000

    def __init__(self, vocab: dict[str, int], cls_id: int, sep_id: int, added: Sequence[str] = ()) -> None:
        self.vocab = vocab
        self.cls_id = cls_id
        self.sep_id = sep_id
        self.added = [a.lower() for a in added if a]
        """Added tokens (``[CLS]``, ``[MASK]``...): the library matches them in
        the raw text, so a text holding one goes to the library."""
        self.added_first = sorted({a[0] for a in self.added})

    @classmethod
    def of(cls, tokenizer: Any) -> FastWordPiece | None:
        """The fast path for a tokenizer of the BERT kind (uncased WordPiece with
        a ``[CLS] $A [SEP]`` template); ``None`` for any other."""
        try:
            state = json.loads(tokenizer.to_str())
            norm, pre, model, post = (
                state.get(k) or {} for k in ("normalizer", "pre_tokenizer", "model", "post_processor")
            )
            bert = (
                norm.get("type") == "BertNormalizer"
                and norm.get("lowercase") is True
                and pre.get("type") == "BertPreTokenizer"
                and model.get("type") == "WordPiece"
                and model.get("continuing_subword_prefix") == "##"
                and int(model.get("max_input_chars_per_word", 0)) >= 100
            )
            cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
            if not bert or cls_id is None or sep_id is None or not _cls_sep_template(post):
                return None
            vocab = {k: v for k, v in tokenizer.get_vocab(with_added_tokens=False).items() if not k.startswith("##")}
        except (ValueError, TypeError, AttributeError):
            return None
        added = [str(a.get("content", "")) for a in state.get("added_tokens") or []]
        return cls(vocab, int(cls_id), int(sep_id), added)

    def ids(self, text: str) -> list[int]:
        """``[CLS] .. [SEP]`` ids of ``text``, or ``[]`` where the library must do it."""
        if len(text) > self.MAX_CHARS or not (text.isascii() and text.isprintable()):
            return []
        lower = text.lower()
        if any(c in lower for c in self.added_first) and any(a in lower for a in self.added):
            return []
        words = list(map(self.vocab.get, lower.translate(_SPACED_PUNCTUATION).split()))
        if None in words:
            return []
        return [self.cls_id, *words, self.sep_id]  # type: ignore[list-item]


def _cls_sep_template(post: dict[str, Any]) -> bool:
    """Whether a post-processor makes ``[CLS] $A [SEP]`` of one sequence."""
    if post.get("type") == "BertProcessing":
        return [post.get("cls", [None])[0], post.get("sep", [None])[0]] == ["[CLS]", "[SEP]"]
    if post.get("type") != "TemplateProcessing":
        return False
    single = post.get("single") or []
    names = [p.get("SpecialToken", {}).get("id") or ("$A" if "Sequence" in p else None) for p in single]
    return names == ["[CLS]", "$A", "[SEP]"]


def plan_batches(lengths: Sequence[int], max_batch: int, budget: Callable[[int], int]) -> Iterator[np.ndarray]:
    """Indexes of each batch, longest texts first; a batch ends at ``budget(seq_len)``
    tokens, or before a text so much shorter that padding would pass
    ``MAX_PADDING`` of the batch (and ``PADDING_SLACK`` tokens)."""
    lens = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lens, kind="stable")
    sorted_lens = lens[order].tolist()
    pos = 0
    while pos < len(order):
        seq_len = sorted_lens[pos]
        limit = min(max_batch, max(1, budget(seq_len) // max(1, seq_len)), len(order) - pos)
        count, real = 1, seq_len
        while count < limit:
            nxt = sorted_lens[pos + count]
            padding = seq_len * (count + 1) - (real + nxt)
            if padding > max(MAX_PADDING * seq_len * (count + 1), PADDING_SLACK):
                break
            count, real = count + 1, real + nxt
        yield order[pos : pos + count]
        pos += count


def pad(batch: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """``input_ids`` and ``attention_mask`` (int64), rows padded to the longest."""
    seq_len = max(len(x) for x in batch)
    input_ids = np.full((len(batch), seq_len), pad_id, dtype=np.int64)
    mask = np.zeros((len(batch), seq_len), dtype=np.int64)
    for r, x in enumerate(batch):
        input_ids[r, : len(x)] = x
        mask[r, : len(x)] = 1
    return input_ids, mask


def _cut(text: str) -> str:
    if len(text) <= CUT_CHARS:
        return text
    at = max(text.rfind(" ", 0, CUT_CHARS), text.rfind("\n", 0, CUT_CHARS))
    return text[:at] if at > 0 else text
