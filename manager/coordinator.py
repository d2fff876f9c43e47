"""The run coordinator: drives one run through its stages and records it.

A run goes ``scanning -> embedding -> clustering -> done`` (clustering only
when a clusterer is given), or ends in ``error`` / ``interrupted``:

1. scanning (``manager.planning.RunPlanner``): ``manager.scan.plan`` lists
   the jobs (or the caller passes ``jobs=``), ``manager.scan.enqueue`` puts
   the missing ones on the bus (idempotent: re-running never duplicates work).
2. embedding (``manager.watch.BusWatcher``): watches the bus until every job
   of the plan is done or dead: the event pump (``manager.events.EventPump``)
   journals the workers' events from ``<ns>:events``; the watcher tracks
   per-job state, the ETA, trims acknowledged stream entries, has
   ``state.json`` rewritten every second, rides out a Redis outage (and
   reconciles after it). What they count is in ``manager.figures``.
3. clustering: calls the injected ``cluster(ClusterRequest)`` callable.
4. the end: a ``RunSummary`` (done, skipped, failed with reasons, pending,
   and the scan errors apart), written to ``summary.json`` and journaled (the
   caller prints it); its ``exit_code`` is non-zero when any job was
   dead-lettered or an input was unreadable.

Files, in the run dir (default ``<output-root>/runs/<run-id>/``):
``state.json`` (atomic), ``events.jsonl`` (hash-chained journal, see
``manager.journal``), ``plan.jsonl`` (the jobs as planned), ``summary.json``,
``scan_report.json`` (large reports), ``.manager.lock`` (held while a
manager drives the run).

The manager's own disk is treated like Redis (``manager.disk``): a full or
failing disk is waited out (up to ``disk_timeout_s``) while the workers'
events wait in Redis. With ``resume=True``, a run whose manager died is
picked up where its journal stops (``manager.resume``).

Use from Python::

    coord = Coordinator(settings, output_root=out, input_root=inp, model=model_id)
    api = coord.serve_api(port=8765)          # optional: API + dashboard in a thread
    summary = coord.run(cluster=my_cluster)   # blocks; coord.stop() interrupts
    api.stop()
    print(summary.render())
    sys.exit(summary.exit_code)

Create the coordinator before starting workers: events are journaled from
the moment it is constructed. ``run_status()``, ``throughput()``,
``request_cluster()`` and ``stop()`` are safe to call from other threads.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bus import constants as c
from bus.errors import BusUnavailable
from bus.messages import Job
from bus.redis_transport import RedisTransport, connect, translated
from bus.settings import RedisSettings
from manager import resume as resuming
from manager.api import ApiServer, StatusHub, create_app
from manager.disk import DiskGuard, DiskUnavailable
from manager.events import EventPump
from manager.figures import RunFigures
from manager.fleet import FleetView
from manager.journal import JOURNAL_FILE, Journal
from manager.planning import RunPlanner, ScanSettings
from manager.redaction import Redactor
from manager.state import STATE_FILE, Interrupted, Stage, StageMachine, write_atomic
from manager.summary import RunSummary
from manager.throughput import Throughput
from manager.usage import StageUsage
from manager.watch import BusWatcher, WatchTimes

__all__ = ["ClusterFn", "ClusterRequest", "Coordinator", "CoordinatorOptions", "Interrupted", "RunHeld"]

log = logging.getLogger("embedfleet.manager")


@dataclass(frozen=True)
class ClusterRequest:
    """What the clusterer is asked to do."""

    output_root: Path
    run_dir: Path
    run_id: str
    outputs: list[str]
    """Outputs (relative to the output root) of the plan's jobs that are done."""
    partial: bool
    """True when cluster-now cut the embedding stage short."""


ClusterFn = Callable[[ClusterRequest], "dict[str, Any] | None"]


@dataclass
class CoordinatorOptions:
    poll_s: float = 0.5
    """Longest wait for worker events between bookkeeping passes."""
    refresh_s: float = 2.0
    """How often every unfinished job's state is re-read from Redis."""
    trim_every_s: float = 10.0
    state_every_s: float = 1.0
    registry_every_s: float = 2.0
    bus_timeout_s: float = 300.0
    """A Redis outage longer than this ends the run in ``error``."""
    disk_timeout_s: float = 300.0
    """A full or failing disk (the run dir's) for longer than this ends the run in ``error``."""
    fsync_interval_s: float = 1.0
    throughput_bucket_s: float = 5.0
    """Width of one point of the throughput-over-time series."""


SCAN_ERRORS_SHOWN = 100
"""Scan errors listed in the run status (all of them are in the summary)."""


class RunHeld(Exception):
    """The run dir belongs to a manager that is still running."""


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


class Coordinator:
    """Drives and records one run. See the module docstring."""

    def __init__(
        self,
        settings: RedisSettings,
        output_root: Path,
        input_root: Path | None = None,
        model: str | None = None,
        *,
        run_dir: Path | None = None,
        run_id: str | None = None,
        column: str = "text",
        id_column: str | None = None,
        rows_per_part: int = c.DEFAULT_ROWS_PER_PART,
        subreddit_list: Path | None = None,
        routes: Any = None,
        options: CoordinatorOptions | None = None,
        secrets: Iterable[str] = (),
        resume: bool = False,
    ) -> None:
        self.settings = settings
        self.output_root = Path(output_root)
        self.input_root = Path(input_root) if input_root is not None else None
        self.model = model
        self.scan_args = {
            "column": column,
            "id_column": id_column,
            "rows_per_part": rows_per_part,
            "subreddit_list": subreddit_list,
            "routes": routes,
        }
        self.opts = options or CoordinatorOptions()
        self.redactor = Redactor([*settings.secrets(), *secrets])
        self._stop = threading.Event()
        self.disk = DiskGuard(self.opts.disk_timeout_s, stop=self._stop)
        self.resumed: dict[str, Any] | None = None
        """The state its dead manager left, when this coordinator resumes a run."""
        self.closed_runs: list[str] = []
        """Runs of the same settings whose manager died, closed and linked to this one."""
        self.run_id, self.run_dir = self._choose_run(run_id, run_dir, resume)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.lock = resuming.RunLock(self.run_dir)
        if not self.lock.acquire():
            raise RunHeld(f"run dir {self.run_dir} is held by another live manager ({resuming.LOCK_FILE})")
        self.client = connect(settings)
        self.transport = RedisTransport(self.client, namespace=settings.namespace)
        self.fleet = FleetView(self.client, settings.namespace, self.redactor)
        self.journal = Journal(
            self.run_dir / JOURNAL_FILE, self.run_id, self.redactor, self.opts.fsync_interval_s, guard=self.disk
        )
        self.machine = StageMachine()
        self.usage = StageUsage()
        self.figures = RunFigures(Throughput(bucket_s=self.opts.throughput_bucket_s))
        """What the run has counted so far (jobs, rows, rates, failures)."""
        self._cluster_now = threading.Event()
        self._cluster_fn: ClusterFn | None = None
        self.pump = EventPump(
            self.client,
            self.transport.keys,
            self.journal,
            self.figures,
            self.fleet,
            self.redactor,
            events_from=f"{self.fleet.redis_time_ms()}-0",
        )
        """Journals the workers' events; events are read from the moment of construction."""
        self.planner = RunPlanner(
            settings,
            self.transport,
            self.client,
            self.journal,
            self.figures,
            self.redactor,
            self.disk,
            self.run_dir,
            write_file=self.write_file,
        )
        o = self.opts
        self.watcher = BusWatcher(
            settings,
            self.transport,
            self.client,
            self.fleet,
            self.journal,
            self.figures,
            self.pump,
            WatchTimes(o.poll_s, o.refresh_s, o.trim_every_s, o.state_every_s, o.registry_every_s, o.bus_timeout_s),
            stop=self._stop,
            cluster_now=self._cluster_now,
            publish_state=self._publish_state,
            note_disk_outages=self.note_disk_outages,
        )
        self._started_ms = int(time.time() * 1000)
        self._ended_ms: int | None = None
        self._t0 = time.monotonic()
        self._elapsed_before = 0.0
        """Seconds the run had been driven before this manager resumed it."""
        if self.resumed is not None:
            self._started_ms = int(self.resumed.get("started_ms") or self._started_ms)
            self._elapsed_before = float(self.resumed.get("elapsed_s") or 0.0)
        self._status: dict[str, Any] = self._build_status()

    def _choose_run(self, run_id: str | None, run_dir: Path | None, resume_ok: bool) -> tuple[str, Path]:
        """This run's id and dir: a dead run of the same settings when
        ``resume_ok`` (the one in ``run_dir``, else the newest under the
        output root), otherwise a new one."""
        if resume_ok:
            candidates = (
                [Path(run_dir)] if run_dir is not None else resuming.orphaned_runs(self.output_root, self._config())
            )
            for d in candidates:
                state = resuming.orphaned(d)
                if state is not None and resuming.same_run(state, self._config()) and state.get("run_id"):
                    self.resumed = state
                    self.closed_runs = [o.name for o in candidates if o != d]
                    return str(state["run_id"]), d
            if run_dir is None:
                self.closed_runs = [d.name for d in candidates]
        rid = run_id or new_run_id()
        return rid, Path(run_dir) if run_dir is not None else self.output_root / "runs" / rid

    # -- public, thread-safe --------------------------------------------
    def run(self, cluster: ClusterFn | None = None, jobs: list[Job] | None = None) -> RunSummary:
        """Run to the end; never raises for a failed run (see the summary).
        A coordinator drives one run: make a new one for the next."""
        if self.machine.stage != Stage.INIT:
            raise RuntimeError(f"run {self.run_id} was already started; create a new Coordinator")
        self._cluster_fn = cluster
        self._t0 = time.monotonic()
        try:
            self._begin()
            self._enter(Stage.SCANNING)
            saved = resuming.read_plan(self.run_dir) if self.resumed is not None else None
            if saved is not None:
                self.planner.enqueue(saved.jobs, done_before=saved.done_before)
            else:
                what = ScanSettings(self.input_root, self.output_root, self.model, self.scan_args)
                # A scan's jobs have no up-to-date output: those the bus marks done lost it.
                scanned = jobs is None
                self.planner.enqueue(self.planner.plan(what, jobs), output_root=self.output_root if scanned else None)
            if self.resumed is not None:
                last = resuming.replay(self.run_dir, self.pump, self.figures, scanned_again=saved is None)
                self.pump.resume_after(last, fallback=self.resumed.get("events_from"))
            self._enter(Stage.EMBEDDING)
            self._embed()
            if cluster is not None:
                self._enter(Stage.CLUSTERING)
                self._cluster(partial=not self.figures.tracker.progress().finished)
            self._enter(Stage.DONE)
        except (Interrupted, KeyboardInterrupt):
            log.warning("run %s interrupted", self.run_id)
            self._enter(Stage.INTERRUPTED)
        except Exception as e:  # the run fails; the summary says why
            self.figures.counters.error = self.redactor.text(f"{type(e).__name__}: {e}")
            log.error("run %s failed: %s", self.run_id, self.figures.counters.error)
            self._enter(Stage.ERROR)
        return self._finish()

    def _begin(self) -> None:
        """The run's first journal line: started, or resumed after its manager died."""
        for old in self.closed_runs:
            resuming.close_dead_run(self.output_root / "runs" / old, self.run_id, self.redactor, self.disk)
        if self.resumed is None:
            data = {**self._config(), "continues": self.closed_runs} if self.closed_runs else self._config()
            self.journal.write("run_started", f"run {self.run_id} started", data=data, sync=True)
            log.info("run %s started; run dir %s", self.run_id, self.run_dir)
            return
        stage = self.resumed.get("stage")
        self.journal.write(
            "run_resumed",
            f"run {self.run_id} resumed: its manager stopped at stage {stage}",
            level="warning",
            data={**self._config(), "stage": stage, "closed": self.closed_runs},
            sync=True,
        )
        log.warning("run %s resumed (its manager stopped at stage %s); run dir %s", self.run_id, stage, self.run_dir)

    def stop(self) -> None:
        """Ask the run to end as ``interrupted`` (from any thread)."""
        self._stop.set()

    @property
    def stop_event(self) -> threading.Event:
        """Set once ``stop()`` was called (a clusterer may watch it)."""
        return self._stop

    def request_cluster(self) -> tuple[bool, str]:
        """cluster-now: end the embedding stage now and cluster what is done."""
        stage = self.machine.stage
        if self._cluster_fn is None:
            return False, "no clusterer is configured for this run"
        if stage != Stage.EMBEDDING:
            return False, f"cluster-now applies while embedding; the run is {stage.value}"
        self._cluster_now.set()
        return True, "clustering starts after the current bookkeeping pass"

    def note_action(self, action: str, detail: str, source: str = "api") -> None:
        """Journal an operator action taken outside the run loop."""
        if self.machine.stage.final:  # the journal is sealed once the run ends
            log.info("action after the run ended: %s: %s", action, detail)
            return
        try:
            self.journal.write("action", f"{action}: {detail}", data={"action": action, "source": source})
        except DiskUnavailable as e:
            log.error("action %s not journaled: %s", action, e)

    def run_status(self) -> dict[str, Any]:
        """The latest run status (as in ``state.json``)."""
        return self._status

    def throughput_series(self) -> dict[str, Any]:
        return self.figures.throughput.series()

    def serve_api(self, host: str = "127.0.0.1", port: int = 8765, token: str | None = None) -> ApiServer:
        """Start the status API and dashboard in a background thread."""
        self.redactor.add(token)
        hub = StatusHub(FleetView.from_settings(self.settings, self.redactor), run=self, settings=self.settings)
        return ApiServer(create_app(hub, token=token), host=host, port=port, token=token).start()

    # -- stages ----------------------------------------------------------
    def _enter(self, stage: Stage) -> None:
        used = self.usage.finish()
        old = self.machine.move(stage)
        self.journal.stage = stage.value
        if stage.final:
            self._ended_ms = int(time.time() * 1000)
        else:
            self.usage.start(stage.value)
        log.info("run %s: %s", self.run_id, stage.value)
        level = {"error": "error", "interrupted": "warning"}.get(stage.value, "info")
        try:
            self.note_disk_outages()
            if old != Stage.INIT:
                self.journal.write("stage_finished", f"{old.value} finished", usage=used, data={"stage": old.value})
            self.journal.write(
                "stage_started",
                f"{stage.value}",
                level=level,
                error=self.figures.counters.error,
                data={"stage": stage.value, "from": old.value},
                sync=True,
            )
            self._publish_state()
        except DiskUnavailable as e:
            if not stage.final:
                raise
            self._disk_lost(e)

    def note_disk_outages(self) -> None:
        """Journal the disk outages that ended (they could not be journaled while they lasted)."""
        for outage in self.disk.take_ended():
            self.journal.write(
                "disk_recovered",
                f"the disk was full or failing for {outage.seconds:.1f} s ({outage.what}: {outage.error})",
                level="warning",
                error=outage.error,
                data={"seconds": outage.seconds, "path": outage.what},
            )

    def _disk_lost(self, e: DiskUnavailable) -> None:
        """The run is ending and its files cannot be written: say so once."""
        counters = self.figures.counters
        if counters.error is None:
            counters.error = self.redactor.text(f"DiskUnavailable: {e}")
        log.error("run %s: %s; the journal stops here (the workers' events stay in Redis)", self.run_id, e)

    def write_file(self, path: Path, data: dict[str, Any]) -> None:
        """``write_atomic`` through the disk guard."""
        self.disk.call(lambda: write_atomic(path, data), str(path))

    def _embed(self) -> None:
        cpu0 = time.thread_time()
        try:
            self.watcher.watch()
        finally:
            self.figures.counters.embed_cpu_s += time.thread_time() - cpu0

    def _cluster(self, partial: bool) -> None:
        assert self._cluster_fn is not None
        tracker = self.figures.tracker
        outputs = sorted(tracker.jobs[j].out for j in tracker.done)
        req = ClusterRequest(self.output_root, self.run_dir, self.run_id, outputs, partial)
        self.journal.write(
            "cluster_started",
            f"clustering {len(outputs)} outputs",
            data={"outputs": len(outputs), "partial": partial},
            sync=True,
        )
        result = self._cluster_fn(req)
        self.figures.counters.cluster = self.redactor.scrub(dict(result or {}))
        self.journal.write("cluster_finished", "clustering finished", data={"result": self.figures.counters.cluster})

    # -- state -----------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        return self.redactor.scrub(
            {
                "input_root": str(self.input_root) if self.input_root else None,
                "output_root": str(self.output_root),
                "model": self.model,
                "redis": self.settings.redacted(),
                "namespace": self.settings.namespace,
                **{k: str(v) if isinstance(v, Path) else v for k, v in self.scan_args.items() if k != "routes"},
            }
        )

    def _build_status(self) -> dict[str, Any]:
        f = self.figures
        counters, throughput = f.counters, f.throughput
        p = f.tracker.progress()
        stage = self.machine.stage
        cpu_jobs = max(1, p.resolved - p.already_done)
        return {
            "version": 1,
            "run_id": self.run_id,
            "run_dir": str(self.run_dir),
            "stage": stage.value,
            "final": stage.final,
            "started_ms": self._started_ms,
            "updated_ms": int(time.time() * 1000),
            "ended_ms": self._ended_ms,
            "elapsed_s": round(self._elapsed(), 1),
            "config": self._config(),
            "jobs": {
                "planned": p.planned,
                "done": p.done,
                "failed": p.dead,
                "pending": p.pending,
                "lost": p.lost,
                "already_done": p.already_done,
                "skipped": f.skipped(),
                "scan_errors": len(counters.scan_errors),
                "enqueued_new": counters.enqueued_new,
                "enqueued_existing": counters.enqueued_existing,
            },
            "progress": round(p.resolved / p.planned, 4) if p.planned else (1.0 if stage.final else 0.0),
            "eta_s": f.eta.eta_s(p.pending + p.lost) if stage == Stage.EMBEDDING else None,
            "jobs_per_s": round(f.eta.jobs_per_s(), 3),
            "rows": counters.rows,
            "model_calls": counters.model_calls,
            "rows_reused": counters.rows_reused,
            "rows_per_s": throughput.current_rate() if not stage.final else 0.0,
            "throughput": {**throughput.busy_rates(), "totals": throughput.totals()},
            "job_seconds": throughput.histogram(),
            "failures_by_reason": f.failures.as_dict(),
            "scan_errors": counters.scan_errors[:SCAN_ERRORS_SHOWN],
            "controls": self.watcher.controls or {"paused": False, "drain": False},
            "usage": self.usage.stages,
            "journal": {"path": str(self.journal.path), "head": self.journal.head.to_dict()},
            "bookkeeping_us_per_job": round(1e6 * counters.embed_cpu_s / cpu_jobs, 1),
            "cluster": counters.cluster,
            "cluster_available": self._cluster_fn is not None,
            "error": counters.error,
            "events_from": self.pump.events_from,
            "resumed": self.resumed is not None,
            "continues": self.closed_runs,
            "manager_pid": os.getpid(),
        }

    def _elapsed(self) -> float:
        """Seconds a manager has driven this run (across resumes)."""
        return self._elapsed_before + time.monotonic() - self._t0

    def _publish_state(self) -> None:
        status = self._build_status()
        self._status = status  # the API shows it even while the disk is full
        self.write_file(self.run_dir / STATE_FILE, status)

    # -- the end ---------------------------------------------------------
    def _finish(self) -> RunSummary:
        f = self.figures
        counters, rates = f.counters, f.throughput.busy_rates()
        p = f.tracker.progress()
        summary = RunSummary(
            run_id=self.run_id,
            run_dir=str(self.run_dir),
            status=self.machine.stage.value,
            planned=p.planned,
            enqueued_new=counters.enqueued_new,
            enqueued_existing=counters.enqueued_existing,
            done=p.done - p.already_done,
            skipped=f.skipped(),
            failed=self._failures(),
            scan_errors=list(counters.scan_errors),
            pending=p.pending + p.lost,
            rows=counters.rows,
            model_calls=counters.model_calls,
            rows_reused=counters.rows_reused,
            seconds=round(self._elapsed(), 2),
            error=counters.error,
            cluster=counters.cluster,
            throughput=rates["classes"],
            worker_throughput=rates["workers"],
            bookkeeping_us_per_job=self._status.get("bookkeeping_us_per_job"),
        )
        level = "info" if summary.exit_code == 0 else "error"
        try:
            self.note_disk_outages()
            self.journal.write(
                "run_finished",
                summary.render().splitlines()[0],
                level=level,
                counters={
                    "done": summary.done,
                    "skipped": summary.skipped,
                    "failed": len(summary.failed),
                    "scan_errors": len(summary.scan_errors),
                    "pending": summary.pending,
                },
                data={"exit_code": summary.exit_code},
                sync=True,
            )
            self.journal.close()
            self._publish_state()
            self.write_file(self.run_dir / "summary.json", self.redactor.scrub(summary.to_dict()))
        except DiskUnavailable as e:
            self._disk_lost(e)
            summary.error, summary.status = counters.error, Stage.ERROR.value
            try:
                self.journal.close()
            except DiskUnavailable:
                pass
        finally:
            self.lock.release()
        # The caller prints the summary (once); the log gets its headline.
        log.info("%s; summary in %s", summary.render().splitlines()[0], self.run_dir / "summary.json")
        return summary

    def _failures(self) -> list[dict[str, Any]]:
        tracker = self.figures.tracker
        dead = sorted(tracker.dead)
        reasons: list[Any] = [None] * len(dead)
        if dead:
            try:
                with translated():
                    reasons = self.client.hmget(self.transport.keys.errors, dead)
            except BusUnavailable:
                pass
        out = []
        for job_id, reason in zip(dead, reasons, strict=True):
            text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else "unknown (no reason recorded)"
            out.append({"job_id": job_id, "path": tracker.jobs[job_id].path, "reason": text})
        return list(self.redactor.scrub(out))
