"""A chain corpus shaped like real Reddit exports: thread trees cut into chains.

Each subreddit gets thread trees on its topic (``corpus.threads``); every
root-to-leaf path becomes one chain, written as consecutive rows (one per
message, root first), so ancestors repeat in every chain below them. A
thread's chains are spread over the subreddit's files and over suffixes, the
way monthly exports split a thread: it starts in one suffix and later chains
land in the same or following ones. This is the data whose repetition the
fleet's text-level reuse is built for.

With ``copies`` = N > 0 the whole corpus is written N times, once into each of
the suffixes ``copy-01`` ... ``copy-NN`` (file names keep the suffix they came
from: ``copy-03/cooking/2024-02-part-00001.parquet``): rows multiply by N,
distinct texts do not.

Columns: ``id`` (unique per row, the suffix it is written under included),
``chain_id``, ``depth``, ``text``, ``topic`` (the subreddit's topic, ground truth
for clustering scores), ``thread_id``, ``message_id`` and ``parent_id`` (null
for the root), so a chain's path can be checked against its thread.
Deterministic for a seed.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bus.constants import INPUT_DIR
from corpus.generate import TOPICS, subreddit_names, topic_of
from corpus.stats import CorpusStats, stats_of
from corpus.threads import Thread, ThreadShape, grow_thread

SUFFIX_LAG_WEIGHTS: tuple[float, ...] = (0.55, 0.3, 0.15)
"""Chance that a chain lands 0, 1, 2 suffixes after its thread's first (clipped at the last)."""


@dataclass(frozen=True)
class ThreadCorpusSpec:
    """Size and shape of a thread corpus (the defaults are the CLI's)."""

    suffixes: int = 2
    subreddits: int = 4
    files_per_subreddit: int = 3
    threads_per_subreddit: int = 40
    seed: int = 0
    copies: int = 0
    row_group_size: int | None = None
    shape: ThreadShape = field(default_factory=ThreadShape)

    def suffix_names(self) -> list[str]:
        """The generated suffixes, one per month as in today's corpus."""
        return [f"2024-{s + 1:02d}" for s in range(self.suffixes)]


@dataclass
class _FileRows:
    """The rows of one output file, column by column, in chain order."""

    chain_ids: list[str] = field(default_factory=list)
    thread_ids: list[str] = field(default_factory=list)
    message_ids: list[str] = field(default_factory=list)
    parent_ids: list[str | None] = field(default_factory=list)
    depths: list[int] = field(default_factory=list)
    texts: list[str | None] = field(default_factory=list)

    def add_chain(self, thread: Thread, thread_id: str, chain_id: str, path: list[int]) -> None:
        for depth, message in enumerate(path):
            parent = thread.parents[message]
            self.chain_ids.append(chain_id)
            self.thread_ids.append(thread_id)
            self.message_ids.append(f"{thread_id}-m{message:03d}")
            self.parent_ids.append(None if parent < 0 else f"{thread_id}-m{parent:03d}")
            self.depths.append(depth)
            self.texts.append(thread.texts[message])

    def table(self, suffix: str, topic: str) -> pa.Table:
        ids = [f"{suffix}/{c}/{d}" for c, d in zip(self.chain_ids, self.depths, strict=True)]
        return pa.table(
            {
                "id": pa.array(ids, pa.string()),
                "chain_id": pa.array(self.chain_ids, pa.string()),
                "depth": pa.array(self.depths, pa.int32()),
                "text": pa.array(self.texts, pa.string()),
                "topic": pa.array([topic] * len(ids), pa.string()),
                "thread_id": pa.array(self.thread_ids, pa.string()),
                "message_id": pa.array(self.message_ids, pa.string()),
                "parent_id": pa.array(self.parent_ids, pa.string()),
            }
        )


_FileKey = tuple[str, str, int]  # (generated suffix, subreddit, file number)


def _spread(spec: ThreadCorpusSpec) -> dict[_FileKey, _FileRows]:
    """Grow every thread and deal its chains out to files and suffixes."""
    suffixes = spec.suffix_names()
    files: dict[_FileKey, _FileRows] = defaultdict(_FileRows)
    lags = range(len(SUFFIX_LAG_WEIGHTS))
    for sub in subreddit_names(spec.subreddits):
        rng = random.Random(f"{spec.seed}/threads/{sub}")
        words = TOPICS[topic_of(sub)]
        for t in range(spec.threads_per_subreddit):
            thread = grow_thread(rng, words, spec.shape)
            thread_id = f"{sub}-t{t:05d}"
            first = rng.randrange(spec.suffixes)
            for c, path in enumerate(thread.chains()):
                lag = rng.choices(lags, SUFFIX_LAG_WEIGHTS)[0]
                suffix = suffixes[min(first + lag, spec.suffixes - 1)]
                key = (suffix, sub, rng.randrange(spec.files_per_subreddit))
                files[key].add_chain(thread, thread_id, f"{thread_id}-c{c:03d}", path)
    return files


def _targets(spec: ThreadCorpusSpec, key: _FileKey) -> list[tuple[str, Path]]:
    """Where one generated file goes: (suffix written under, path relative to ``chains/``)."""
    suffix, sub, number = key
    if spec.copies == 0:
        return [(suffix, Path(suffix, sub, f"part-{number:05d}.parquet"))]
    copies = [f"copy-{k:02d}" for k in range(1, spec.copies + 1)]
    return [(copy, Path(copy, sub, f"{suffix}-part-{number:05d}.parquet")) for copy in copies]


def generate_thread_corpus(root: Path, spec: ThreadCorpusSpec | None = None) -> CorpusStats:
    """Write a thread corpus under ``root/chains/`` and return what was written.

    Files already under ``root`` with other names are left alone (and not counted).
    """
    spec = spec or ThreadCorpusSpec()
    if min(spec.suffixes, spec.subreddits, spec.files_per_subreddit) < 1 or spec.copies < 0:
        raise ValueError(f"a thread corpus needs at least one suffix, subreddit and file, and copies >= 0: {spec}")
    paths: list[Path] = []
    rows = 0
    texts: set[str | None] = set()
    for key, file_rows in sorted(_spread(spec).items()):
        texts.update(file_rows.texts)
        for suffix, rel in _targets(spec, key):
            path = root / INPUT_DIR / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            table = file_rows.table(suffix, topic_of(key[1]))
            pq.write_table(table, path, row_group_size=spec.row_group_size or max(1, table.num_rows))
            paths.append(path)
            rows += table.num_rows
    return stats_of(paths, rows, texts)
