"""``python -m corpus --output DIR``: write a sample corpus of chains."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from corpus.generate import generate_corpus


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m corpus", description=__doc__)
    p.add_argument("--output", type=Path, required=True, help="input root to write chains/ under")
    p.add_argument("--suffixes", type=int, default=2)
    p.add_argument("--subreddits", type=int, default=4)
    p.add_argument("--files-per-subreddit", type=int, default=3)
    p.add_argument("--rows-per-file", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    paths = generate_corpus(
        a.output,
        suffixes=a.suffixes,
        subreddits=a.subreddits,
        files_per_subreddit=a.files_per_subreddit,
        rows_per_file=a.rows_per_file,
        seed=a.seed,
    )
    rows = a.rows_per_file * len(paths)
    print(f"wrote {len(paths)} files, {rows} rows under {a.output / 'chains'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
