"""Helpers for tests and benchmarks of the worker: enqueue a corpus as jobs,
and count what is left on an in-memory bus (``--burst`` with the fake)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from bus.memory import MemoryTransport
from bus.messages import Job
from workers.paths import fingerprint


class Enqueuer(Protocol):
    def enqueue(self, job: Job, redo: bool = False) -> bool: ...


def jobs_for(
    input_root: Path,
    files: Iterable[Path],
    model: str,
    id_column: str | None = None,
    lane: str = "default",
    rows: Callable[[Path], list[tuple[int, int] | None]] | None = None,
) -> list[Job]:
    """One job per file (or per row range ``rows(path)`` gives), as the manager makes them."""
    jobs = []
    for f in files:
        rel = Path(os.path.abspath(f)).relative_to(os.path.abspath(input_root)).as_posix()
        for r in rows(f) if rows else [None]:
            jobs.append(Job.create(rel, fingerprint(f), model, rows=r, id_column=id_column, lane=lane))
    return jobs


def enqueue_all(bus: Enqueuer, jobs: Iterable[Job]) -> int:
    return sum(bus.enqueue(j) for j in jobs)


def memory_backlog(t: MemoryTransport) -> Callable[[list[str]], int]:
    """Outstanding jobs on a ``MemoryTransport`` (queued, pending, delayed).

    Reads the fake's private tables: the fake has no public call for it, and
    this is test support only."""

    def count(lanes: list[str]) -> int:
        with t._lock:
            queued = sum(len(t._entries.get(lane, {})) for lane in lanes)
            delayed = sum(1 for _due, job in t._delayed if job.lane in lanes)
            return queued + delayed

    return count
