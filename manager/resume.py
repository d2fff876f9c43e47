"""A run whose manager died (kill -9, a crash, a power cut) is picked up by
the next manager started with the same settings: the same run id, run dir
and journal, nothing journaled twice and nothing left out.

What makes it possible:

- ``plan.jsonl`` in the run dir: the run's jobs as planned (one job message
  a line, with whether it was done before the run), written once before they
  are enqueued. A resumed run takes its plan from there instead of scanning
  again (a new scan would find the work already done up to date, and the
  run's figures would no longer add up).
- the journal itself: every worker event line keeps the events stream entry
  it came from (``data.entry``). A resumed run replays the journal into its
  figures and reads the events stream from just after the last entry
  journaled, so what the workers said while no manager listened (completions,
  ``worker_started``) is journaled once, in order. Should the stream have been
  trimmed past that entry (it keeps about 100,000 events), the gap is
  journaled as a warning.
- ``.manager.lock`` in the run dir: held (``flock``) by the live manager of
  the run. A run whose ``state.json`` is not final and whose lock is free has
  no manager: it can be resumed. The kernel releases the lock of a killed
  process.

``serve`` and ``run`` resume the newest such run under ``<output>/runs`` (or
the one in ``--run-dir``) when its settings (input and output roots, model,
Redis, namespace, columns, parts, checkpoint) are the ones given; other
unfinished runs of the same settings are closed as ``interrupted`` with a
link to the run that took over.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bus.messages import Job
from manager.disk import DiskGuard
from manager.events import EventPump, stream_id_key
from manager.figures import RunFigures
from manager.journal import JOURNAL_FILE, Journal
from manager.redaction import Redactor
from manager.state import STATE_FILE, write_atomic

log = logging.getLogger("embedfleet.manager")

LOCK_FILE = ".manager.lock"
PLAN_FILE = "plan.jsonl"
SAME_RUN_KEYS = (
    "input_root",
    "output_root",
    "model",
    "redis",
    "namespace",
    "column",
    "id_column",
    "rows_per_part",
    "subreddit_list",
)
"""The settings a run must share with the manager that resumes it."""


class RunLock:
    """An exclusive ``flock`` on ``<run dir>/.manager.lock``: the live manager of a run."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd = -1

    def acquire(self) -> bool:
        """Take the lock if it is free; whether we hold it now."""
        if self._fd >= 0:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing releases the flock
            self._fd = -1


def read_state_file(run_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((Path(run_dir) / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def same_run(state: dict[str, Any], config: dict[str, Any]) -> bool:
    """Whether a run was started with these settings."""
    theirs = state.get("config") or {}
    return all(theirs.get(k) == config.get(k) for k in SAME_RUN_KEYS)


def orphaned(run_dir: Path) -> dict[str, Any] | None:
    """The state of ``run_dir`` when its run is unfinished and no manager holds it."""
    state = read_state_file(run_dir)
    if state is None or state.get("final", True) or not (Path(run_dir) / JOURNAL_FILE).is_file():
        return None
    lock = RunLock(run_dir)
    try:
        if not lock.acquire():
            return None
    except OSError:
        return None
    lock.release()
    return state


def orphaned_runs(output_root: Path, config: dict[str, Any]) -> list[Path]:
    """Unfinished runs of these settings under ``<output_root>/runs`` with no
    manager, newest first."""
    runs = Path(output_root) / "runs"
    if not runs.is_dir():
        return []
    found: list[tuple[int, Path]] = []
    for d in runs.iterdir():
        state = orphaned(d) if d.is_dir() else None
        if state is not None and same_run(state, config):
            found.append((int(state.get("started_ms") or 0), d))
    return [d for _, d in sorted(found, reverse=True)]


# -- the plan ----------------------------------------------------------------


def write_plan(jobs: list[Job], done_before: set[str]) -> bytes:
    """The bytes of ``plan.jsonl`` (written atomically by the caller)."""
    lines = [json.dumps({"before": j.id in done_before, "job": json.loads(j.to_json())}) for j in jobs]
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


@dataclass
class SavedPlan:
    jobs: list[Job] = field(default_factory=list)
    done_before: set[str] = field(default_factory=set)


def read_plan(run_dir: Path) -> SavedPlan | None:
    """The plan a run saved, or ``None`` when it has none (it died scanning)."""
    path = Path(run_dir) / PLAN_FILE
    if not path.is_file():
        return None
    plan = SavedPlan()
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            job = Job.from_json(json.dumps(rec["job"]))
            plan.jobs.append(job)
            if rec.get("before"):
                plan.done_before.add(job.id)
    return plan


# -- the journal ---------------------------------------------------------------


def journal_records(run_dir: Path) -> Iterator[dict[str, Any]]:
    """Every whole line of a run's journal, parsed (unreadable lines skipped)."""
    path = Path(run_dir) / JOURNAL_FILE
    if not path.is_file():
        return
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                return  # a torn last line: the journal cuts it off when reopened
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            if isinstance(rec, dict):
                yield rec


# -- acting on a resumed run -----------------------------------------------------


def replay(run_dir: Path, pump: EventPump, figures: RunFigures, scanned_again: bool) -> str | None:
    """Rebuild a resumed run's figures from its journal; returns the last
    events stream entry journaled (reading goes on after it).

    ``scanned_again``: the dead manager never saved its plan, so the run was
    scanned anew and its scan lines are not replayed (they were written again)."""
    last_entry: str | None = None
    for rec in journal_records(run_dir):
        etype = str(rec.get("type") or "")
        data: dict[str, Any] = rec["data"] if isinstance(rec.get("data"), dict) else {}
        counters: dict[str, Any] = rec["counters"] if isinstance(rec.get("counters"), dict) else {}
        if isinstance(data.get("entry"), str):
            if last_entry is None or stream_id_key(data["entry"]) > stream_id_key(last_entry):
                last_entry = data["entry"]
        if data.get("source") == "worker" or etype == "worker_event_invalid":
            _replay_event(pump, etype, data, rec)
        elif etype in ("scan_finished", "scan_error", "enqueued") and not scanned_again:
            _replay_scan(figures, etype, data, counters, rec)
    return last_entry


def _replay_event(pump: EventPump, etype: str, data: dict[str, Any], rec: dict[str, Any]) -> None:
    pump.first_time(data.get("eid"))
    if etype == "worker_event_invalid":
        return
    ev = {**data, "type": etype, "error": rec.get("error")}
    job = data.get("job") if isinstance(data.get("job"), str) else None
    klass = data.get("class") if isinstance(data.get("class"), str) else None
    ts = rec.get("ts_ms")
    end_s = ts / 1000 if isinstance(ts, int | float) else None
    pump.apply(etype, str(data.get("worker") or "?"), job, ev, klass, end_s=end_s)


def _replay_scan(
    figures: RunFigures, etype: str, data: dict[str, Any], counters: dict[str, Any], rec: dict[str, Any]
) -> None:
    if etype == "scan_finished":
        figures.counters.up_to_date = int(counters.get("up_to_date") or 0)
    elif etype == "enqueued":
        figures.counters.enqueued_new = int(counters.get("new") or 0)
        figures.counters.enqueued_existing = int(counters.get("existing") or 0)
    elif etype == "scan_error":
        problem = str(rec.get("error") or "")
        figures.counters.scan_errors.append(
            {"job_id": None, "path": data.get("path"), "reason": problem, "stage": "scanning"}
        )
        figures.failures.add("scan", problem)


def close_dead_run(run_dir: Path, taken_over_by: str, redactor: Redactor, disk: DiskGuard) -> None:
    """Close an unfinished run of the same settings whose manager died: its
    journal and state end ``interrupted``, naming the run that took over."""
    lock = RunLock(run_dir)
    state = read_state_file(run_dir)
    if state is None or state.get("final", True) or not lock.acquire():
        return
    try:
        journal = Journal(run_dir / JOURNAL_FILE, str(state.get("run_id")), redactor, guard=disk)
        journal.stage = "interrupted"
        reason = f"its manager stopped at stage {state.get('stage')}; run {taken_over_by} took over"
        journal.write(
            "run_finished",
            f"run {state.get('run_id')}: closed, {reason}",
            level="warning",
            error=reason,
            data={"continued_by": taken_over_by, "stage": state.get("stage")},
            sync=True,
        )
        journal.close()
        now = int(time.time() * 1000)
        state.update(
            stage="interrupted",
            final=True,
            ended_ms=now,
            updated_ms=now,
            error=reason,
            continued_by=taken_over_by,
            journal={"path": str(journal.path), "head": journal.head.to_dict()},
        )
        disk.call(lambda: write_atomic(run_dir / STATE_FILE, state), str(run_dir / STATE_FILE))
        log.warning("closed run %s (%s)", state.get("run_id"), reason)
    finally:
        lock.release()
