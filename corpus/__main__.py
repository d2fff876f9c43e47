"""``python -m corpus --output DIR``: write a sample corpus of chains.

``--mode chains`` (the default) writes independent short chains, a fixed
number of rows per file. ``--mode threads`` writes chains cut from thread
trees as real Reddit exports are: every message recurs in every chain below
it, across files and suffixes; ``--copies N`` then writes that whole corpus
into N suffixes (copy-01 ... copy-NN). Either way it prints the files, rows,
distinct non-null texts and the repetition ratio (rows / distinct texts).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pyarrow.parquet as pq

from corpus.generate import generate_corpus
from corpus.stats import CorpusStats, stats_of
from corpus.thread_corpus import ThreadCorpusSpec, generate_thread_corpus

MODES = ("chains", "threads")


def build_parser() -> argparse.ArgumentParser:
    """The CLI's options; every one but ``--output`` shows its default in ``--help``."""
    p = argparse.ArgumentParser(
        prog="python -m corpus", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--output",
        "--data-root",
        "--input-root",
        dest="output",
        type=Path,
        required=True,
        metavar="DIR",
        help="the root to write chains/ under: the other roles' --data-root or --input-root (required)",
    )
    p.add_argument("--mode", choices=MODES, default="chains", help="corpus shape (default: %(default)s)")
    p.add_argument(
        "--suffixes", type=int, metavar="N", default=2, help="suffixes (months) to write (default: %(default)s)"
    )
    p.add_argument(
        "--subreddits", type=int, metavar="N", default=4, help="subreddits, one topic each (default: %(default)s)"
    )
    p.add_argument(
        "--files-per-subreddit",
        type=int,
        metavar="N",
        default=3,
        help="files per subreddit and suffix (default: %(default)s)",
    )
    p.add_argument(
        "--rows-per-file", type=int, metavar="N", default=400, help="chains mode: rows per file (default: %(default)s)"
    )
    p.add_argument(
        "--threads-per-subreddit",
        type=int,
        metavar="N",
        default=40,
        help="threads mode: thread trees per subreddit (default: %(default)s)",
    )
    p.add_argument(
        "--copies",
        type=int,
        metavar="N",
        default=0,
        help="threads mode: write the whole corpus into N suffixes copy-01..; 0: none (default: %(default)s)",
    )
    p.add_argument(
        "--seed", type=int, metavar="N", default=0, help="random seed; same seed, same bytes (default: %(default)s)"
    )
    return p


def _chains(a: argparse.Namespace) -> CorpusStats:
    paths = generate_corpus(
        a.output,
        suffixes=a.suffixes,
        subreddits=a.subreddits,
        files_per_subreddit=a.files_per_subreddit,
        rows_per_file=a.rows_per_file,
        seed=a.seed,
    )
    texts: set[str | None] = set()
    for path in paths:
        texts.update(pq.read_table(path, columns=["text"]).column("text").to_pylist())
    return stats_of(paths, a.rows_per_file * len(paths), texts)


def _threads(a: argparse.Namespace) -> CorpusStats:
    spec = ThreadCorpusSpec(
        suffixes=a.suffixes,
        subreddits=a.subreddits,
        files_per_subreddit=a.files_per_subreddit,
        threads_per_subreddit=a.threads_per_subreddit,
        seed=a.seed,
        copies=a.copies,
    )
    return generate_thread_corpus(a.output, spec)


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    if a.copies and a.mode != "threads":
        p.error("--copies needs --mode threads")
    for name in ("suffixes", "subreddits", "files_per_subreddit", "rows_per_file", "threads_per_subreddit"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if a.copies < 0:
        p.error("--copies must be 0 or more")
    stats = _threads(a) if a.mode == "threads" else _chains(a)
    print(stats.summary(a.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
