# Twin: rust/worker/src/pipeline.rs (docs/parity.md)
"""One embedding job, from the job message to the output file.

``prepare`` starts reading in the background at once (so the next job's
input is read while the current one embeds); ``run`` deduplicates, embeds and
writes chunk by chunk, calling ``checkpoint`` between chunks so that a lost
lease or a shutdown can stop it early.

Pipelined (the default): the reader thread also cleans chunk n+1 and has the
embedder tokenize its new texts (``prepare``: the tokenizers library runs
without the GIL) while chunk n is embedded, a device thread runs the model on
one round of new texts while this thread claims the next round in the reuse
store and stores the last (``workers.reuse``), and a writer thread encodes and
writes chunk n-1. Every step keeps its order, so the output is the same file
as unpipelined (``pipelined=False``: one thread does everything in turn).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from bus.constants import EMBEDDING_DIM, META_PREFIX
from bus.errors import BadInput, ModelMismatch
from bus.messages import Job
from bus.reuse import ReuseStore
from bus.transport import Delivery
from workers.cleaning import CleanTexts, Counts, clean
from workers.dedup import DedupCache, embed_rows
from workers.embedder import Embedder
from workers.limits import MemoryBudget
from workers.paths import DataRoots, fingerprint
from workers.readahead import ReadAhead, WriteBehind
from workers.reader import Chunk, InputPart, open_part, read_chunk
from workers.result import JobResult
from workers.reuse import FleetReuse
from workers.writer import OutputWriter, Provenance, is_up_to_date, metadata

DEFAULT_CHUNK_ROWS = 32_768
MIN_CHUNK_ROWS = 1_024
ROW_OVERHEAD = 3 * EMBEDDING_DIM * 4 + 300
"""Working bytes per row besides its text: the embedding three times (computed,
and the chunk waiting for the writer thread beside the one it writes) plus
Python objects."""

_Rows = tuple[np.ndarray, "pa.Array | None", np.ndarray]
"""Absolute row numbers, ids and embeddings of one chunk, for ``OutputWriter.write``."""


@dataclass
class _UpToDate:
    meta: dict[str, str]


@dataclass
class _Opened:
    part: InputPart
    out: Path
    cache: DedupCache


@dataclass
class _Cleaned:
    """A chunk cleaned (and its new texts tokenized) on the reader thread."""

    chunk: Chunk
    cleaned: CleanTexts


@contextmanager
def _shutdown(device: ThreadPoolExecutor | None) -> Iterator[None]:
    """Stop the job's device thread, waiting for what it is computing."""
    try:
        yield
    finally:
        if device is not None:
            device.shutdown(wait=True)


class PreparedJob:
    """A claimed job whose input is being read in the background."""

    def __init__(self, delivery: Delivery, stream: ReadAhead[object]) -> None:
        self.delivery = delivery
        self.stream = stream

    def close(self) -> None:
        self.stream.close()


class EmbedPipeline:
    """Turns a job into its output file (the worker's ``JobHandler``)."""

    def __init__(
        self,
        roots: DataRoots,
        embedder: Embedder,
        provenance: Provenance,
        memory: MemoryBudget | None = None,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        dedup_bytes: int = 256 << 20,
        reuse: ReuseStore | None = None,
        pipelined: bool = True,
    ) -> None:
        self.roots = roots
        self.embedder = embedder
        self.provenance = provenance
        self.memory = memory or MemoryBudget()
        self.chunk_rows = chunk_rows
        self.dedup_bytes = dedup_bytes
        self.reuse = reuse
        """The fleet's reuse store; ``None``: each job dedups within itself only."""
        self.pipelined = pipelined

    # -- reading (background thread) ----------------------------------------
    def prepare(self, delivery: Delivery) -> PreparedJob:
        job = delivery.job
        return PreparedJob(delivery, ReadAhead(lambda: self._produce(job), name=f"read-{job.id[:8]}"))

    def _produce(self, job: Job) -> Iterator[object]:
        out = self.roots.output(job.out)
        meta = is_up_to_date(out, job)
        if meta is not None:
            yield _UpToDate(meta)
            return
        if job.model != self.embedder.model_id:
            raise ModelMismatch(f"{job.path}: job wants model {job.model}, this worker has {self.embedder.model_id}")
        path = self.roots.input(job.path)
        now = fingerprint(path)
        if now != job.fingerprint:
            raise BadInput(job.path, f"input changed since the scan (fingerprint {now}, job has {job.fingerprint})")
        part = open_part(job.path, path, job.column, job.id_column, job.rows)
        per_row = 3 * part.text_bytes_per_row + ROW_OVERHEAD
        smallest = min(MIN_CHUNK_ROWS, max(1, part.rows))
        self.memory.require(smallest * per_row, job.path)
        cache = DedupCache(max_bytes=self._dedup_budget())
        yield _Opened(part, out, cache)
        for chunk in self._chunks(part, per_row):
            yield self._clean(chunk, cache) if self.pipelined else chunk

    def _chunks(self, part: InputPart, per_row: int) -> Iterator[Chunk]:
        if part.rows == 0:
            yield Chunk(part.start, [], None)
            return
        offset = 0
        while offset < part.rows:
            n = self.memory.fit_rows(self.chunk_rows, per_row, MIN_CHUNK_ROWS)
            n = min(n, part.rows - offset)
            yield read_chunk(part, offset, n)
            offset += n

    def _clean(self, chunk: Chunk, cache: DedupCache) -> _Cleaned:
        """Clean a chunk and tokenize the texts the job has not seen (the reuse
        store may still answer some: their tokens are then dropped unused)."""
        cleaned = clean(chunk.values)
        prepare = getattr(self.embedder, "prepare", None)
        if prepare is not None:
            known = cache.entries
            prepare([t for t in dict.fromkeys(cleaned.texts) if t not in known])
        return _Cleaned(chunk, cleaned)

    # -- embedding and writing (caller's thread) -----------------------------
    def run(self, prepared: PreparedJob, checkpoint: Callable[[], None]) -> JobResult:
        t0 = time.monotonic()
        job = prepared.delivery.job
        head = next(prepared.stream)
        if isinstance(head, _UpToDate):
            counts = Counts(**{k: int(head.meta.get(META_PREFIX + k, 0)) for k in Counts().as_dict()})
            return JobResult(counts.rows_embedded, True, counts, time.monotonic() - t0)
        assert isinstance(head, _Opened)
        part = head.part
        counts = Counts()
        model = self.embedder
        device = ThreadPoolExecutor(1, thread_name_prefix=f"device-{job.id[:8]}") if self.pipelined else None
        reuse = FleetReuse(
            self.reuse, model.model_id, model.precision, self.provenance.worker_id, checkpoint, device=device
        )
        id_type = part.id_type if job.id_column else None
        with OutputWriter(head.out, self.provenance.worker_id, id_type, job.id) as writer, _shutdown(device):
            sink: WriteBehind[_Rows] | None = None
            if self.pipelined:
                sink = WriteBehind(lambda r: writer.write(*r), depth=1, name=f"write-{job.id[:8]}")
            try:
                for item in prepared.stream:
                    checkpoint()
                    assert isinstance(item, Chunk | _Cleaned)
                    got = item if isinstance(item, _Cleaned) else _Cleaned(item, clean(item.values))
                    rows = self._embed_chunk(got.chunk, got.cleaned, head.cache, reuse, counts)
                    if rows is not None:
                        sink.put(rows) if sink is not None else writer.write(*rows)
                if sink is not None:
                    sink.finish()
                checkpoint()
                writer.commit(metadata(job, (part.start, part.end), self.provenance, counts))
            finally:
                if sink is not None:
                    sink.close()  # before the writer aborts: no write may still be running
        return JobResult(counts.rows_embedded, False, counts, time.monotonic() - t0)

    def _dedup_budget(self) -> int:
        room = self.memory.headroom()
        return self.dedup_bytes if room is None else min(self.dedup_bytes, room // 4)

    def _embed_chunk(
        self, chunk: Chunk, cleaned: CleanTexts, cache: DedupCache, reuse: FleetReuse, counts: Counts
    ) -> _Rows | None:
        """Embed one cleaned chunk; the rows to write (None: no row kept)."""
        done = embed_rows(cleaned.texts, self.embedder, cache, reuse)
        got = cleaned.counts
        got.rows_truncated = done.rows_truncated
        got.rows_deduplicated = done.rows_deduplicated
        got.rows_reused = done.rows_reused
        got.rows_int8 = done.rows_int8
        got.rows_exact = len(cleaned.texts) - done.rows_int8
        got.model_calls = done.model_calls
        counts.add(cleaned.counts)
        if not cleaned.texts:
            return None
        ids = chunk.ids.take(cleaned.positions) if chunk.ids is not None else None
        return chunk.start + cleaned.positions, ids, done.embeddings
