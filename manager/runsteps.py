"""The coordinator's steps: plan, enqueue, and the embedding watch loop
(events, per-job state, trimming, state.json, Redis outages).

Kept apart from ``manager.coordinator`` so that each file holds one
concern; these functions act on a ``Coordinator``.
"""

from __future__ import annotations

import importlib
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bus.errors import BusUnavailable
from bus.messages import Job
from bus.redis_transport import translated
from manager.resume import PLAN_FILE, write_plan
from manager.state import write_bytes_atomic

if TYPE_CHECKING:
    from manager.coordinator import Coordinator

log = logging.getLogger("embedfleet.manager")

_REPORT_INLINE_BYTES = 32_768
"""Scan reports larger than this go to ``scan_report.json``; the journal
keeps a reference."""


def _scan_module() -> Any:
    """``manager.scan`` (written beside this module; imported late)."""
    return importlib.import_module("manager.scan")


def _count(value: Any) -> int:
    return len(value) if isinstance(value, list | tuple | set | dict) else int(value)


def plan_jobs(co: Coordinator, jobs: list[Job] | None) -> list[Job]:
    """The run's jobs: from the caller, or from scanning the input root."""
    if jobs is not None:
        co.journal.write(
            "scan_finished",
            f"{len(jobs)} jobs supplied by the caller",
            counters={"jobs": len(jobs)},
            data={"source": "caller"},
        )
        return list(jobs)
    if co.input_root is None or co.model is None:
        raise ValueError("scanning needs input_root and model (or pass jobs=)")
    from manager.coordinator import report_dict

    plan = _scan_module().plan(co.input_root, co.output_root, co.model, **co.scan_args)
    report = co.redactor.scrub(report_dict(getattr(plan, "report", None)))
    body = json.dumps(report, default=str)
    data: dict[str, Any] = {"source": "scan"}
    if len(body) > _REPORT_INLINE_BYTES:
        co.write_file(co.run_dir / "scan_report.json", {"report": report})
        data["report_file"] = "scan_report.json"
    else:
        data["report"] = report
    note_scan_report(co, getattr(plan, "report", None))
    co.journal.write(
        "scan_finished",
        f"{len(plan.jobs)} jobs planned, {co.counters.up_to_date} outputs up to date, "
        f"{len(co.counters.scan_errors)} unreadable inputs",
        counters={
            "jobs": len(plan.jobs),
            "up_to_date": co.counters.up_to_date,
            "scan_errors": len(co.counters.scan_errors),
        },
        data=data,
    )
    return list(plan.jobs)


def _relative(co: Coordinator, path: str) -> str:
    """Paths under the input root as in job messages (relative)."""
    if co.input_root is not None:
        try:
            return Path(path).relative_to(co.input_root).as_posix()
        except ValueError:
            pass
    return path


def note_scan_report(co: Coordinator, report: Any) -> None:
    """Outputs already up to date count as skipped; inputs the scan could not
    read are scan errors of the run (each journaled with its reason): not
    jobs of the plan, counted apart from the dead-lettered jobs."""
    totals = getattr(report, "totals", None)
    co.counters.up_to_date = int(getattr(totals, "up_to_date", 0) or 0)
    temps = list(getattr(report, "temps", None) or [])
    if temps:
        co.journal.write(
            "scan_temps",
            f"{len(temps)} hidden temporary files in the output tree (being written, or left by killed workers; "
            "ignored: workers remove their own)",
            level="info",
            counters={"temps": len(temps)},
            data={"temps": temps[:100]},
        )
    for issue in list(getattr(report, "errors", None) or [])[:10_000]:
        path, problem = _relative(co, str(getattr(issue, "path", "?"))), str(getattr(issue, "problem", issue))
        co.counters.scan_errors.append(
            co.redactor.scrub({"job_id": None, "path": path, "reason": problem, "stage": "scanning"})
        )
        co.failures.add("scan", co.redactor.text(problem))
        co.journal.write("scan_error", f"{path}: {problem}", level="error", error=problem, data={"path": path})


def enqueue_jobs(co: Coordinator, jobs: list[Job], done_before: set[str] | None = None) -> None:
    """Put the plan on the bus (idempotent) and read where each job stands.

    A new plan is saved to ``plan.jsonl`` first, with the jobs done before
    the run; a resumed run passes the saved plan and its ``done_before``."""
    from manager.tracker import JobTracker

    co.tracker = JobTracker(jobs)
    with translated():  # what was done before this run: read before enqueuing (workers may be running)
        co.tracker.refresh(co.client, co.transport.keys)
    if done_before is None:
        co.tracker.note_already_done()
        body = write_plan(jobs, co.tracker.already_done)
        co.disk.call(lambda: write_bytes_atomic(co.run_dir / PLAN_FILE, body), str(co.run_dir / PLAN_FILE))
    else:
        co.tracker.already_done = set(done_before) & set(co.tracker.jobs)
    co.transport.ensure_lanes(sorted({j.lane for j in jobs}) or ["default"])
    try:
        scan = _scan_module()
    except ImportError:
        scan = None
    if scan is not None and hasattr(scan, "enqueue"):
        res = scan.enqueue(co.settings, jobs)
        new, existing = _count(res.new), _count(res.existing)
    else:
        new = sum(1 for j in jobs if co.transport.enqueue(j))
        existing = len(jobs) - new
    co.counters.enqueued_new, co.counters.enqueued_existing = new, existing
    with translated():
        co.tracker.refresh(co.client, co.transport.keys)
    p = co.tracker.progress()
    co.journal.write(
        "enqueued",
        f"{new} new jobs, {existing} already known ({p.already_done} done before)",
        counters={"new": new, "existing": existing, "already_done": p.already_done},
    )


class _Clock:
    """When each periodic task last ran."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}

    def due(self, name: str, every_s: float, now: float) -> bool:
        if now - self.last.get(name, -1e18) >= every_s:
            self.last[name] = now
            return True
        return False


def watch(co: Coordinator) -> None:
    """Watch the bus until every job is done or dead (or cluster-now / stop)."""
    clock = _Clock()
    outage: float | None = None
    while True:
        if co._stop.is_set():
            from manager.coordinator import Interrupted

            raise Interrupted()
        try:
            if outage is not None:
                with translated():
                    co.client.ping()
                _recovered(co, time.monotonic() - outage)
                outage = None
            if _pass(co, clock):
                drain_events(co)
                return
        except BusUnavailable as e:
            outage = _outage(co, e, outage)


def _pass(co: Coordinator, clock: _Clock) -> bool:
    """One bookkeeping pass; True when the embedding stage is over."""
    co.note_disk_outages()
    pump_events(co, int(co.opts.poll_s * 1000))
    now = time.monotonic()
    hinted = co.tracker.progress().finished
    finished = False
    if hinted or clock.due("refresh", co.opts.refresh_s, now):
        with translated():
            co.tracker.refresh(co.client, co.transport.keys)
        p = co.tracker.progress()
        co.eta.observe(p.resolved)
        if p.lost:
            recover_lost(co)
        finished = co.tracker.progress().finished
    if clock.due("trim", co.opts.trim_every_s, now):
        trim(co)
    if clock.due("registry", co.opts.registry_every_s, now):
        co.refresh_registry()
    if finished or clock.due("state", co.opts.state_every_s, now):
        co.watch_controls()
        co._publish_state()
    if co._cluster_now.is_set():
        co.journal.write("action", "cluster-now: ending the embedding stage early", data={"action": "cluster-now"})
        return True
    return finished


def pump_events(co: Coordinator, block_ms: int) -> int:
    """Journal the workers' events that arrived (waits at most ``block_ms``)."""
    with translated():
        resp: Any = co.client.xread({co.transport.keys.events: co._events_from}, count=500, block=max(1, block_ms))
    n = 0
    for _stream, entries in resp or []:
        for eid, fields in entries:
            entry = eid.decode() if isinstance(eid, bytes) else str(eid)
            co.on_event(entry, fields.get(b"event") or fields.get("event"))
            co._events_from = entry  # only once journaled: a full disk leaves it to be read again
            n += 1
    return n


def drain_events(co: Coordinator, grace_s: float = 1.0) -> None:
    """Journal the events still in flight when the last job finished.

    A worker marks its job done and then publishes the event, so the last
    events may arrive just after the state says the run is over."""
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        missing = co.tracker.done.union(co.tracker.dead) - co.tracker.already_done - co.events_seen
        if pump_events(co, 50) == 0 and not missing:
            return


def trim(co: Coordinator) -> int:
    """Drop acknowledged entries from every lane (never past a pending one)."""
    removed = sum(co.transport.trim(lane) for lane in co.transport.lanes())
    co.counters.trimmed += removed
    if removed:
        co.journal.write(
            "trimmed", f"{removed} acknowledged stream entries removed", level="debug", counters={"trimmed": removed}
        )
    return removed


def recover_lost(co: Coordinator) -> int:
    """Jobs whose state Redis lost (a crash): put them back on the bus."""
    jobs = [co.tracker.jobs[j] for j in sorted(co.tracker.lost)]
    try:
        scan = _scan_module()
        n = int(scan.reconcile(co.settings, list(co.tracker.jobs.values())))
    except (ImportError, AttributeError):
        n = sum(1 for j in jobs if co.transport.enqueue(j))
    co.journal.write(
        "reconciled",
        f"{len(jobs)} jobs had lost their state; {n} re-enqueued",
        level="warning",
        counters={"reenqueued": n},
    )
    with translated():
        co.tracker.refresh(co.client, co.transport.keys)
    return n


def _outage(co: Coordinator, e: BusUnavailable, since: float | None) -> float:
    now = time.monotonic()
    if since is None:
        co.journal.write("bus_unavailable", str(e), level="warning", error=str(e), sync=True)
        log.warning("Redis unavailable; waiting up to %.0f s", co.opts.bus_timeout_s)
        since = now
    if now - since > co.opts.bus_timeout_s:
        raise BusUnavailable(f"Redis unavailable for more than {co.opts.bus_timeout_s:.0f} s") from None
    time.sleep(min(2.0, max(0.2, (now - since) / 4)))
    return since


def _recovered(co: Coordinator, seconds: float) -> None:
    co.journal.write("bus_recovered", f"Redis back after {seconds:.1f} s", level="warning")
    log.info("Redis back after %.1f s; reconciling", seconds)
    recover_lost(co)
