# Twin: the temporary-file functions of rust/worker/src/output.rs
"""The workers' temporary output files: their names, and removing stale ones.

An output is written to ``.<name>.<worker>.<job8>.<random>.tmp`` beside its
final ``<name>`` (``<worker>``: the worker id with anything but letters,
digits, ``-`` and ``_`` turned into ``_``; ``<job8>``: the first 8 hex digits
of the job id; ``<random>``: 8 hex digits drawn per attempt), created when
the first rows are written, then fsynced and renamed into place. A worker
killed while writing leaves its temporary behind; no reader sees it (hidden),
and the name says whose it was and for which job, so:

- a worker removes its own (same worker id) from the output tree when it
  starts: a restarted worker with a fixed ``--worker-id`` cleans up after its
  previous life;
- a worker that takes a job over (a delivery after the first: its previous
  owner died or was cut off) removes that job's temporaries from the output
  directory before it runs the job.

Names of the previous format, ``.<name>.<worker>.<random>.tmp``, count as the
worker's own too.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from bus.constants import OUTPUT_DIR
from bus.errors import EmbedfleetError
from bus.messages import Job
from workers.paths import DataRoots

log = logging.getLogger(__name__)

TEMP_SUFFIX = ".tmp"
_HEX = frozenset("0123456789abcdef")


def safe_worker_id(worker_id: str) -> str:
    """The worker id as it appears in a temporary name."""
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_") else "_" for ch in worker_id) or "_"


def temp_path(final: Path, worker_id: str, job_id: str) -> Path:
    """A fresh temporary name for ``final``, for this worker and job."""
    return final.parent / f".{final.name}.{safe_worker_id(worker_id)}.{job_id[:8]}.{secrets.token_hex(4)}{TEMP_SUFFIX}"


@dataclass(frozen=True)
class TempName:
    """What a temporary name says."""

    final: str
    worker: str
    job8: str | None
    """``None`` for a name of the previous format (no job)."""


def _hex8(s: str) -> bool:
    return len(s) == 8 and set(s) <= _HEX


def parse_temp(name: str) -> TempName | None:
    """The parts of a worker's temporary name, or ``None`` for any other name."""
    if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
        return None
    core = name[1 : -len(TEMP_SUFFIX)]
    parts = core.rsplit(".", 3)
    if len(parts) == 4 and _hex8(parts[2]) and _hex8(parts[3]) and safe_worker_id(parts[1]) == parts[1] and parts[0]:
        return TempName(parts[0], parts[1], parts[2])
    parts = core.rsplit(".", 2)
    if len(parts) == 3 and _hex8(parts[2]) and safe_worker_id(parts[1]) == parts[1] and parts[0]:
        return TempName(parts[0], parts[1], None)
    return None


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False
    except OSError as e:
        log.warning("could not remove the stale temporary %s: %s", path, e)
        return False


def remove_job_temps(final: Path, job_id: str) -> int:
    """Remove the temporaries of ``job_id`` beside ``final`` (any worker's);
    how many were removed."""
    try:
        entries = os.listdir(final.parent)
    except OSError:
        return 0
    removed = 0
    for name in entries:
        t = parse_temp(name)
        if t is not None and t.final == final.name and t.job8 == job_id[:8]:
            removed += _unlink(final.parent / name)
    return removed


def remove_worker_temps(output_root: Path, worker_id: str) -> int:
    """Remove every temporary of ``worker_id`` under ``<output_root>/embeddings``
    (a walk of the directories, no stat of ordinary files); how many."""
    me = safe_worker_id(worker_id)
    removed = 0
    for dirpath, _dirs, files in os.walk(output_root / OUTPUT_DIR):
        for name in files:
            if name.startswith(".") and name.endswith(TEMP_SUFFIX):
                t = parse_temp(name)
                if t is not None and t.worker == me:
                    removed += _unlink(Path(dirpath) / name)
    return removed


class TempFiles:
    """This worker's clean-up of temporaries (see the module docstring)."""

    def __init__(self, roots: DataRoots, worker_id: str) -> None:
        self.roots = roots
        self.worker_id = worker_id

    def sweep_own(self) -> int:
        """At start: remove this worker id's stale temporaries."""
        t0 = time.monotonic()
        n = remove_worker_temps(self.roots.output_root, self.worker_id)
        if n:
            log.info("removed %d stale temporary files of %s (%.2f s)", n, self.worker_id, time.monotonic() - t0)
        return n

    def taken_over(self, job: Job) -> int:
        """Before running a job taken over from another worker: remove its temporaries."""
        try:
            final = self.roots.output(job.out)
        except (EmbedfleetError, OSError):
            return 0  # the job fails on its own path; nothing of ours to clean
        n = remove_job_temps(final, job.id)
        if n:
            log.info("%s: removed %d temporary files of an earlier attempt", job.path, n)
        return n
