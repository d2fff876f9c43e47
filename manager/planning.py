"""The scanning stage: the run's jobs (from a scan of the input root, or
given by the caller), the scan's report in the journal, and the jobs put on
the bus.

A new plan is saved to ``plan.jsonl`` before anything is enqueued, with the
jobs already done before the run, so that a manager resuming the run takes
the very same plan (``manager.resume``). Enqueuing is idempotent: re-running
never duplicates work.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bus.messages import Job
from bus.redis_transport import RedisClient, RedisTransport, translated
from bus.settings import RedisSettings
from manager import scan
from manager.disk import DiskGuard
from manager.figures import RunFigures
from manager.journal import Journal
from manager.redaction import Redactor
from manager.resume import PLAN_FILE, write_plan
from manager.state import write_bytes_atomic
from manager.tracker import JobTracker

log = logging.getLogger("embedfleet.manager")

REPORT_INLINE_BYTES = 32_768
"""Scan reports larger than this go to ``scan_report.json``; the journal
keeps a reference."""

SCAN_ERRORS_KEPT = 10_000
"""Unreadable inputs journaled one by one (the report has them all)."""


@dataclass(frozen=True)
class ScanSettings:
    """What to scan, for which model, and how (``manager.scan.plan``'s options)."""

    input_root: Path | None
    output_root: Path
    model: str | None
    options: dict[str, Any]
    """``column``, ``id_column``, ``rows_per_part``, ``subreddit_list``, ``routes``."""


class RunPlanner:
    """Plans a run and puts its jobs on the bus; see the module docstring.

    ``write_file(path, data)`` writes a JSON file of the run dir atomically."""

    def __init__(
        self,
        settings: RedisSettings,
        transport: RedisTransport,
        client: RedisClient,
        journal: Journal,
        figures: RunFigures,
        redactor: Redactor,
        disk: DiskGuard,
        run_dir: Path,
        write_file: Callable[[Path, dict[str, Any]], None],
    ) -> None:
        self.settings = settings
        self.transport = transport
        self.client = client
        self.journal = journal
        self.figures = figures
        self.redactor = redactor
        self.disk = disk
        self.run_dir = run_dir
        self.write_file = write_file

    def plan(self, what: ScanSettings, jobs: list[Job] | None) -> list[Job]:
        """The run's jobs: from the caller, or from scanning the input root."""
        if jobs is not None:
            self.journal.write(
                "scan_finished",
                f"{len(jobs)} jobs supplied by the caller",
                counters={"jobs": len(jobs)},
                data={"source": "caller"},
            )
            return list(jobs)
        if what.input_root is None or what.model is None:
            raise ValueError("scanning needs input_root and model (or pass jobs=)")
        plan = scan.plan(what.input_root, what.output_root, what.model, **what.options)
        report = self.redactor.scrub(plan.report.to_dict())
        body = json.dumps(report, default=str)
        data: dict[str, Any] = {"source": "scan"}
        if len(body) > REPORT_INLINE_BYTES:
            self.write_file(self.run_dir / "scan_report.json", {"report": report})
            data["report_file"] = "scan_report.json"
        else:
            data["report"] = report
        self.note_scan_report(plan.report, what.input_root)
        counters = self.figures.counters
        self.journal.write(
            "scan_finished",
            f"{len(plan.jobs)} jobs planned, {counters.up_to_date} outputs up to date, "
            f"{len(counters.scan_errors)} unreadable inputs",
            counters={
                "jobs": len(plan.jobs),
                "up_to_date": counters.up_to_date,
                "scan_errors": len(counters.scan_errors),
            },
            data=data,
        )
        return list(plan.jobs)

    def note_scan_report(self, report: scan.ScanReport, input_root: Path | None) -> None:
        """Outputs already up to date count as skipped; inputs the scan could not
        read are scan errors of the run (each journaled with its reason): not
        jobs of the plan, counted apart from the dead-lettered jobs."""
        counters = self.figures.counters
        counters.up_to_date = report.totals.up_to_date
        if report.temps:
            self.journal.write(
                "scan_temps",
                f"{len(report.temps)} hidden temporary files in the output tree (being written, or left by killed "
                "workers; ignored: workers remove their own)",
                level="info",
                counters={"temps": len(report.temps)},
                data={"temps": report.temps[:100]},
            )
        for issue in report.errors[:SCAN_ERRORS_KEPT]:
            path, problem = _relative(str(issue.path), input_root), str(issue.problem)
            counters.scan_errors.append(
                self.redactor.scrub({"job_id": None, "path": path, "reason": problem, "stage": "scanning"})
            )
            self.figures.failures.add("scan", self.redactor.text(problem))
            self.journal.write("scan_error", f"{path}: {problem}", level="error", error=problem, data={"path": path})

    def enqueue(self, jobs: list[Job], done_before: set[str] | None = None, output_root: Path | None = None) -> None:
        """Put the plan on the bus (idempotent) and read where each job stands.

        A new plan is saved to ``plan.jsonl`` first, with the jobs done before
        the run; a resumed run passes the saved plan and its ``done_before``.
        With ``output_root``, jobs marked done whose output is gone from disk
        are queued again first (``manager.reconcile.requeue_vanished``)."""
        if output_root is not None:
            self.requeue_vanished(jobs, output_root)
        tracker = self.figures.tracker = JobTracker(jobs)
        with translated():  # what was done before this run: read before enqueuing (workers may be running)
            tracker.refresh(self.client, self.transport.keys)
        if done_before is None:
            tracker.note_already_done()
            body = write_plan(jobs, tracker.already_done)
            path = self.run_dir / PLAN_FILE
            self.disk.call(lambda: write_bytes_atomic(path, body), str(path))
        else:
            tracker.already_done = set(done_before) & set(tracker.jobs)
        self.transport.ensure_lanes(sorted({j.lane for j in jobs}) or ["default"])
        res = scan.enqueue(self.settings, jobs)
        counters = self.figures.counters
        counters.enqueued_new, counters.enqueued_existing = res.new, res.existing
        with translated():
            tracker.refresh(self.client, self.transport.keys)
        p = tracker.progress()
        self.journal.write(
            "enqueued",
            f"{res.new} new jobs, {res.existing} already known ({p.already_done} done before)",
            counters={"new": res.new, "existing": res.existing, "already_done": p.already_done},
        )

    def requeue_vanished(self, jobs: list[Job], output_root: Path) -> None:
        """Done jobs whose outputs were deleted since: queued again, loudly."""
        gone = scan.requeue_vanished(self.settings, jobs, output_root)
        if gone:
            self.journal.write(
                "outputs_vanished",
                f"{len(gone)} jobs were done but their outputs are gone from {output_root} "
                f"(e.g. {gone[0].out}): queued again",
                level="warning",
                counters={"jobs": len(gone)},
                data={"outputs": [j.out for j in gone[:100]]},
            )


def _relative(path: str, input_root: Path | None) -> str:
    """Paths under the input root as in job messages (relative)."""
    if input_root is not None:
        try:
            return Path(path).relative_to(input_root).as_posix()
        except ValueError:
            pass
    return path
