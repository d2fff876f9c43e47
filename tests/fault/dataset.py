"""The harness's tiny corpus and the jobs for it.

Many small files (a few rows each, an id column, some null, empty and long
texts from ``corpus.generate``) so that a run of hundreds of jobs takes
seconds, plus one *poison* file that the crash hook keys on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bus.messages import Job
from corpus.generate import generate_corpus

POISON_DIR = "poisoned"
"""Subreddit folder of the poison file; ``EMBEDFLEET_FAULT_CRASH_PATH`` keys on it."""


@dataclass(frozen=True)
class Corpus:
    root: Path
    files: tuple[str, ...]
    """Relative paths of the ordinary input files (``chains/...``)."""
    poison: str
    """Relative path of the poison file."""


def fingerprint(path: Path) -> str:
    st = os.stat(path)
    return f"{st.st_size}-{st.st_mtime_ns}"


def make_corpus(root: Path, n_files: int = 200, rows_per_file: int = 4, subreddits: int = 4) -> Corpus:
    """Write ``n_files`` small inputs and one poison file under ``root``."""
    per_sub = -(-n_files // subreddits)
    paths = generate_corpus(root, subreddits=subreddits, files_per_subreddit=per_sub, rows_per_file=rows_per_file,
                            seed=6, long_share=0.03, null_share=0.05, empty_share=0.05)  # fmt: skip
    rels = sorted(p.relative_to(root).as_posix() for p in paths)[:n_files]
    poison = root / "chains" / "2024-01" / POISON_DIR / "part-00000.parquet"
    poison.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"id": pa.array(["p0", "p1"]), "text": pa.array(["this file kills", "its worker"])})
    pq.write_table(table, poison)
    return Corpus(root, tuple(rels), poison.relative_to(root).as_posix())


def jobs_for(corpus: Corpus, rels: list[str] | tuple[str, ...], model: str) -> list[Job]:
    """One whole-file job per input, with its id column."""
    return [Job.create(rel, fingerprint(corpus.root / rel), model, id_column="id") for rel in rels]
