"""The manager's scan: turn the input tree into exactly the jobs still missing,
and put them on the bus without ever duplicating one.

- ``plan`` walks ``<input-root>/chains/{suffix}/{subreddit}/*.parquet`` in
  parallel (Rust, ``manager._core``), diffs it against
  ``<output-root>/embeddings/...`` (an output is up to date when its footer
  says it was made from the input's fingerprint ``"{size}-{mtime_ns}"`` with
  the same model), splits large inputs into row-range jobs aligned to row
  groups, and routes each job to a lane (``manager.routing``).
- ``enqueue`` puts jobs on the bus through the shared ``enqueue.lua`` in
  pipelined batches (Rust): job ids are deterministic and a known id is left
  alone, so a re-run, or two managers at once, enqueue each job once.
- ``reconcile`` heals the bus after Redis lost the tail of its AOF.
- ``delete_orphans`` removes outputs whose input vanished (only when asked).

Footer cache: the facts read from footers are kept in
``<output-root>/.embedfleet/scan-cache.bin``, keyed by relative path and
valid while the file's size, mtime and inode are unchanged, so a re-scan of a
large tree reads directory entries only. Deleting the file is always safe.

``tests/support/pyscan.py`` is the same scan in plain Python: the
benchmark's baseline and the tests' oracle.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from bus.constants import DEFAULT_ROWS_PER_PART, OUTPUT_DIR
from bus.enqueue import enqueue_pipelined
from bus.errors import BusUnavailable, UnsafePath
from bus.messages import Job, check_relative
from bus.settings import RedisSettings
from manager import _core
from manager.reconcile import reconcile as reconcile_lost
from manager.reconcile import requeue_vanished as requeue_vanished_done
from manager.routing import Routes

log = logging.getLogger("embedfleet.scan")

SUBREDDIT_LIST = "subreddits_list.json"
"""The checkpoint file in the input root: which subreddits, in what order."""

CACHE_PATH = Path(_core.CACHE_DIR) / _core.CACHE_FILE
"""The footer cache, relative to the output root."""

Progress = Callable[[int, int, int], Any]
"""``progress(dirs_done, dirs_total, files_seen)``."""


@dataclass(frozen=True)
class ScanIssue:
    """Something wrong with one path; the scan reported it and went on."""

    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


@dataclass
class SubredditCounts:
    """What the diff found for one subreddit (over all suffixes). ``files``
    are inputs; ``split_parts`` and ``jobs`` count planned jobs."""

    name: str
    files: int = 0
    up_to_date: int = 0
    missing: int = 0
    modified: int = 0
    split_parts: int = 0
    jobs: int = 0
    orphans: int = 0
    errors: int = 0

    def add(self, other: SubredditCounts) -> None:
        for k, v in asdict(other).items():
            if k != "name":
                setattr(self, k, getattr(self, k) + v)


@dataclass
class ScanReport:
    """Per-subreddit counts (in scan order), the problems with their paths,
    and how the scan went (footers read, cache, seconds)."""

    subreddits: dict[str, SubredditCounts]
    errors: list[ScanIssue]
    orphans: list[str]
    stats: dict[str, Any] = field(default_factory=dict)
    temps: list[str] = field(default_factory=list)
    """The workers' hidden temporary files in the output tree (relative to the
    output root): being written, or left by a killed worker. No outputs;
    workers remove their own stale ones."""

    @property
    def totals(self) -> SubredditCounts:
        total = SubredditCounts("total")
        for counts in self.subreddits.values():
            total.add(counts)
        return total

    def to_dict(self) -> dict[str, Any]:
        return {
            "subreddits": [asdict(c) for c in self.subreddits.values()],
            "totals": asdict(self.totals),
            "errors": [asdict(e) for e in self.errors],
            "orphans": list(self.orphans),
            "temps": list(self.temps),
            "stats": dict(self.stats),
        }


@dataclass
class Plan:
    """The jobs a scan found missing, and its report."""

    input_root: Path
    output_root: Path
    model: str
    jobs: list[Job]
    report: ScanReport

    @property
    def orphans(self) -> list[str]:
        """Outputs (relative to the output root) whose input vanished."""
        return self.report.orphans

    @property
    def errors(self) -> list[ScanIssue]:
        return self.report.errors


@dataclass(frozen=True)
class EnqueueResult:
    new: int
    """Jobs added to their lane."""
    existing: int
    """Jobs the bus already knew (queued, done or dead): left alone."""


def load_subreddit_list(path: Path) -> list[str]:
    """A checkpoint file: a JSON list of names, or ``{"subreddits": [...]}``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: unreadable subreddit list: {e}") from None
    names = data.get("subreddits") if isinstance(data, dict) else data
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f'{path}: expected a JSON list of subreddit names or {{"subreddits": [...]}}')
    return list(names)


CheckpointArg = str | os.PathLike[str] | Sequence[str] | None
"""A checkpoint: a file, the names themselves, or ``None`` for the default."""


def resolve_checkpoint(input_root: Path, subreddit_list: CheckpointArg) -> list[str] | None:
    """The subreddits to take: given names, a given file, else
    ``<input-root>/subreddits_list.json`` if present, else all (``None``)."""
    if subreddit_list is None:
        default = Path(input_root) / SUBREDDIT_LIST
        return load_subreddit_list(default) if default.is_file() else None
    if isinstance(subreddit_list, str | os.PathLike):
        return load_subreddit_list(Path(subreddit_list))
    return list(subreddit_list)


_JOB_FIELDS = ("path", "out", "fingerprint", "model", "rows", "column", "id_column", "lane", "attempt", "id")
_POSITIONAL = tuple(f.name for f in fields(Job)) == _JOB_FIELDS
"""Jobs are built positionally (much faster for big plans) while ``Job``'s
fields keep this order; by keyword otherwise."""


def _make_job(
    path: str,
    out: str,
    fp: str,
    model: str,
    rows: tuple[int, int] | None,
    column: str,
    id_column: str | None,
    lane: str,
    job_id: str,
) -> Job:
    if _POSITIONAL:
        return Job(path, out, fp, model, rows, column, id_column, lane, 1, job_id)
    return Job(
        path=path,
        out=out,
        fingerprint=fp,
        model=model,
        rows=rows,
        column=column,
        id_column=id_column,
        lane=lane,
        id=job_id,
    )


def _counts(s: _core.SubredditScan) -> SubredditCounts:
    return SubredditCounts(
        s.name, s.files, s.up_to_date, s.missing, s.modified, s.split_parts, s.jobs, s.orphans, s.errors
    )


def to_plan(
    raw: Any,
    input_root: Path,
    output_root: Path,
    model: str,
    *,
    column: str = "text",
    id_column: str | None = None,
    routes: Routes | None = None,
) -> Plan:
    """A ``Plan`` from a scanner's raw result (``_core.scan``, or the test
    oracle ``tests/support/pyscan.py``)."""
    routes = routes or Routes()
    names = [s.name for s in raw["subreddits"]]
    if routes.sizes:
        lanes = [routes.lane(names[j.rank], j.bytes) for j in raw["jobs"]]
    else:
        by_rank = [routes.lane(n, 0) for n in names]
        lanes = [by_rank[j.rank] for j in raw["jobs"]]
    jobs = [
        _make_job(j.path, j.out, j.fingerprint, model, j.rows, column, id_column, lane, j.id)
        for j, lane in zip(raw["jobs"], lanes, strict=True)
    ]
    report = ScanReport(
        subreddits={s.name: _counts(s) for s in raw["subreddits"]},
        errors=[ScanIssue(p, problem) for p, problem in raw["issues"]],
        orphans=list(raw["orphans"]),
        stats=dict(raw["stats"]),
        temps=list(raw.get("temps", [])),
    )
    return Plan(Path(input_root), Path(output_root), model, jobs, report)


def plan(
    input_root: str | os.PathLike[str],
    output_root: str | os.PathLike[str],
    model: str,
    *,
    column: str = "text",
    id_column: str | None = None,
    rows_per_part: int = DEFAULT_ROWS_PER_PART,
    subreddit_list: CheckpointArg = None,
    routes: Routes | None = None,
    progress: Progress | None = None,
    use_cache: bool = True,
    threads: int = 0,
) -> Plan:
    """Scan and diff the trees: the jobs still missing, and a report.

    ``rows_per_part``: inputs with more rows become row-range jobs (0 never
    splits). ``threads``: scan threads, 0 for one per core (more help on
    network storage). Raises ``FileNotFoundError`` without
    ``<input-root>/chains`` and ``ValueError`` for a bad checkpoint file."""
    if rows_per_part < 0:
        raise ValueError("rows_per_part must be >= 0")
    checkpoint = resolve_checkpoint(Path(input_root), subreddit_list)
    raw = _core.scan(
        os.fspath(input_root),
        os.fspath(output_root),
        model,
        rows_per_part=rows_per_part,
        subreddits=checkpoint,
        use_cache=use_cache,
        threads=threads,
        progress=progress,
    )
    if raw["stats"]["cache_error"]:
        log.warning("footer cache not saved: %s", raw["stats"]["cache_error"])
    return to_plan(raw, Path(input_root), Path(output_root), model, column=column, id_column=id_column, routes=routes)


def enqueue(settings: RedisSettings, jobs: Iterable[Job], *, redo: bool = False) -> EnqueueResult:
    """Put jobs on the bus, idempotently, creating their lanes' consumer
    groups. With ``redo``, jobs already done are queued again. Raises
    ``BusUnavailable`` when Redis cannot be reached."""
    jobs = list(jobs)
    if not jobs:
        return EnqueueResult(0, 0)
    if settings.ssl:  # The Rust client is built without TLS: redis-py does it.
        return EnqueueResult(*enqueue_pipelined(settings, jobs, redo=redo))
    try:
        new, existing = _core.enqueue(
            jobs,
            namespace=settings.namespace,
            host=settings.host,
            port=settings.port,
            db=settings.db,
            username=settings.username,
            password=settings.password,
            unix_socket=settings.unix_socket,
            redo=redo,
        )
    except ConnectionError as e:
        raise BusUnavailable(str(e)) from None
    return EnqueueResult(new, existing)


def reconcile(settings: RedisSettings, jobs: Iterable[Job]) -> int:
    """After Redis lost the tail of its AOF: enqueue the jobs whose state was
    lost, and put back those still marked queued that are in neither their
    stream nor their delayed set. Returns how many were re-added; a job still
    present is never added twice (see ``manager.reconcile``)."""
    return reconcile_lost(settings, list(jobs), enqueue)


def requeue_vanished(settings: RedisSettings, jobs: Iterable[Job], output_root: str | os.PathLike[str]) -> list[Job]:
    """Jobs marked done on the bus whose output is gone from disk, queued
    again; returns them (see ``manager.reconcile.requeue_vanished``)."""
    return requeue_vanished_done(settings, list(jobs), Path(output_root), enqueue)


def delete_orphans(plan: Plan) -> int:
    """Delete the plan's orphans (outputs whose input vanished); returns how
    many were removed. Only paths under ``<output-root>/embeddings`` are
    touched."""
    removed = 0
    for rel in plan.orphans:
        try:
            check_relative(rel)
            if not rel.startswith(OUTPUT_DIR + "/"):
                raise UnsafePath(f"{rel}: not under {OUTPUT_DIR}/")
            (plan.output_root / rel).unlink()
            removed += 1
        except FileNotFoundError:
            continue
        except (OSError, UnsafePath) as e:
            log.warning("orphan not deleted: %s: %s", rel, e)
    return removed
