"""Size and repetition of a chain corpus, the figures benchmarks quote.

Chains repeat every message in every chain below it, so the work a fleet
saves by embedding each distinct text once is ``rows / distinct_texts``.
``measure_corpus`` reads them back from the files, so a corpus on disk (of any
origin) can be described the same way the generator describes what it wrote.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from bus.constants import INPUT_DIR


@dataclass(frozen=True)
class CorpusStats:
    """Files, rows and distinct non-null texts of a corpus; ``paths`` are the files, sorted."""

    paths: tuple[Path, ...]
    rows: int
    distinct_texts: int

    @property
    def files(self) -> int:
        """How many parquet files the corpus has."""
        return len(self.paths)

    @property
    def repetition(self) -> float:
        """Rows per distinct non-null text (0.0 for a corpus without texts)."""
        return self.rows / self.distinct_texts if self.distinct_texts else 0.0

    def summary(self, root: Path) -> str:
        """The one line the CLI prints after writing under ``root``."""
        return (
            f"wrote {self.files:,} files, {self.rows:,} rows ({self.distinct_texts:,} distinct texts, "
            f"repetition {self.repetition:.1f}x) under {root / INPUT_DIR}"
        )


def stats_of(paths: Iterable[Path], rows: int, texts: Iterable[str | None]) -> CorpusStats:
    """Figures for ``rows`` rows in ``paths`` whose texts (any order, repeats kept or not) are ``texts``."""
    distinct = {t for t in texts if t is not None}
    return CorpusStats(tuple(sorted(paths)), rows, len(distinct))


def measure_corpus(root: Path, text_column: str = "text") -> CorpusStats:
    """Read every ``root/chains/*/*/*.parquet`` and count its rows and distinct texts."""
    paths = sorted((root / INPUT_DIR).glob("*/*/*.parquet"))
    rows = 0
    texts: set[str | None] = set()
    for path in paths:
        column = pq.read_table(path, columns=[text_column]).column(text_column)
        rows += len(column)
        texts.update(column.to_pylist())
    return stats_of(paths, rows, texts)
