"""What a finished job reports to the bus and the journal (shared by the
generic runtime and the embedding pipeline)."""

from __future__ import annotations

from dataclasses import dataclass

from workers.cleaning import Counts


@dataclass
class JobResult:
    """Rows embedded (what ``complete`` counts), whether the output was already
    up to date, the cleaning counts and the seconds the job took."""

    rows: int
    skipped: bool
    counts: Counts
    seconds: float
