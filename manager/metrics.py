"""Prometheus text exposition (format 0.0.4) of the run and the fleet.

Written by hand: a few families do not justify a client library, and the
values come from one snapshot (the run status the API and ``state.json``
show, and the fleet read from Redis), so a scrape agrees with the dashboard
and ``manager status``. Rules the output keeps, checked by
``promtool check metrics`` in the tests:

- every family once, with one HELP and one TYPE, all its samples together;
- base units (seconds), counters end in ``_total`` and only hold counts
  that never go down; current levels (jobs queued, dead letters) are gauges;
- labels with a bounded set of values (lane, class, stage, state, reason
  class; worker ids of the registered, not stopped, workers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from manager import __version__

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STAGES = ("init", "scanning", "embedding", "clustering", "done", "error", "interrupted")
PREFIX = "embedfleet_"

BUS_LEVELS = ("queued", "dead")
"""Fields of ``<ns>:stats`` that go up and down: exported as gauges."""
BUS_JOB_EVENTS = ("enqueued", "done", "retried", "requeued", "duplicates", "skipped_existing", "lost_lease")
"""Fields of ``<ns>:stats`` that only grow and count jobs: ``bus_jobs_total{event}``."""
BUS_TEXT_COUNTS = {
    "rows": ("bus_rows_total", "Rows embedded by the fleet (all runs of the namespace)."),
    "model_calls": ("bus_model_calls_total", "Texts the fleet sent to the model (all runs of the namespace)."),
    "rows_reused": ("bus_rows_reused_total", "Rows whose vector came from the reuse store (all runs)."),
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in sorted(labels.items())) + "}"


def _number(value: float | int) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


@dataclass
class _Family:
    name: str
    kind: str
    help: str
    samples: list[str] = field(default_factory=list)


class _Doc:
    """Families in order of first use; each one's samples kept together."""

    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}

    def _family(self, name: str, kind: str, help_: str) -> _Family:
        full = PREFIX + name
        fam = self._families.get(full)
        if fam is None:
            fam = self._families[full] = _Family(full, kind, help_)
        elif fam.kind != kind:
            raise ValueError(f"{full} declared as {fam.kind} and {kind}")
        return fam

    def add(
        self, name: str, kind: str, help_: str, value: float | int | None, labels: dict[str, str] | None = None
    ) -> None:
        if value is None or not isinstance(value, int | float):
            return
        fam = self._family(name, kind, help_)
        fam.samples.append(f"{fam.name}{_labels(labels or {})} {_number(value)}")

    def histogram(
        self,
        name: str,
        help_: str,
        bounds: list[float],
        counts: list[int],
        total_s: float,
        labels: dict[str, str],
    ) -> None:
        """One labelled histogram series: per-bucket ``counts`` (the last one
        past every bound), made cumulative here."""
        fam = self._family(name, "histogram", help_)
        running = 0
        for bound, n in zip([*bounds, math.inf], counts, strict=False):
            running += n
            le = "+Inf" if math.isinf(bound) else _number(float(bound))
            fam.samples.append(f"{fam.name}_bucket{_labels({**labels, 'le': le})} {running}")
        fam.samples.append(f"{fam.name}_sum{_labels(labels)} {_number(float(total_s))}")
        fam.samples.append(f"{fam.name}_count{_labels(labels)} {running}")

    def text(self) -> str:
        lines: list[str] = []
        for fam in self._families.values():
            if fam.samples:
                lines += [f"# HELP {fam.name} {fam.help}", f"# TYPE {fam.name} {fam.kind}", *fam.samples]
        return "\n".join(lines) + "\n"


def render(status: dict[str, Any], workers: list[dict[str, Any]]) -> str:
    """Metrics text for one status snapshot and worker list."""
    doc = _Doc()
    bus = status.get("bus") or {}
    doc.add("bus_up", "gauge", "1 when Redis answered this scrape.", 1 if bus.get("reachable") else 0)
    doc.add(
        "build_info", "gauge", "The manager's version, as a label; the value is always 1.", 1, {"version": __version__}
    )
    _bus(doc, bus)
    _run(doc, status.get("run") or {})
    _workers(doc, workers)
    return doc.text()


def _bus(doc: _Doc, bus: dict[str, Any]) -> None:
    stats = bus.get("stats") or {}
    for name in BUS_LEVELS:
        doc.add(
            "bus_jobs",
            "gauge",
            "Jobs of the namespace now queued or dead-lettered (<ns>:stats).",
            stats.get(name),
            {"state": name},
        )
    for name in BUS_JOB_EVENTS:
        doc.add(
            "bus_jobs_total",
            "counter",
            "Job events of the namespace since its creation (<ns>:stats), by event.",
            stats.get(name),
            {"event": name},
        )
    for name, (metric, help_) in BUS_TEXT_COUNTS.items():
        doc.add(metric, "counter", help_, stats.get(name))
    known = {*BUS_LEVELS, *BUS_JOB_EVENTS, *BUS_TEXT_COUNTS}
    for name, value in sorted(stats.items()):
        if name not in known:
            doc.add("bus_stat", "gauge", "Other fields of <ns>:stats, by field.", value, {"field": name})
    for name, on in sorted((bus.get("controls") or {}).items()):
        doc.add("control", "gauge", "Fleet controls (1 = set).", 1 if on else 0, {"control": name})
    for lane in bus.get("lanes") or []:
        for what in ("waiting", "in_flight", "delayed"):
            doc.add(
                "lane_jobs",
                "gauge",
                "Jobs per lane: waiting, in flight, delayed for a retry.",
                lane.get(what, 0),
                {"lane": lane["lane"], "state": what},
            )
    doc.add("dead_letters", "gauge", "Entries in the dead-letter stream.", bus.get("failed"))


def _run(doc: _Doc, run: dict[str, Any]) -> None:
    if not run:
        return
    for stage in STAGES:
        doc.add(
            "run_stage",
            "gauge",
            "1 for the run's current stage.",
            1 if run.get("stage") == stage else 0,
            {"stage": stage},
        )
    jobs = run.get("jobs") or {}
    for name in ("planned", "done", "failed", "pending", "lost", "already_done", "skipped"):
        doc.add("run_jobs", "gauge", "Jobs of the current run's plan, by state.", jobs.get(name), {"state": name})
    doc.add("run_scan_errors", "gauge", "Inputs the run's scan could not read (not jobs).", jobs.get("scan_errors"))
    doc.add("run_progress_ratio", "gauge", "Share of the run's jobs done or failed.", run.get("progress"))
    doc.add("run_eta_seconds", "gauge", "Estimated seconds left in the embedding stage.", run.get("eta_s"))
    doc.add("run_rows_total", "counter", "Rows embedded during the run.", run.get("rows"))
    doc.add("run_model_calls_total", "counter", "Texts sent to the model during the run.", run.get("model_calls"))
    doc.add("run_rows_reused_total", "counter", "Rows whose vector came from the reuse store.", run.get("rows_reused"))
    doc.add(
        "run_rows_per_second",
        "gauge",
        "The fleet's current speed: sum of the recently working workers' rows per busy second.",
        run.get("rows_per_s"),
    )
    _throughput(doc, run.get("throughput") or {})
    hist = run.get("job_seconds") or {}
    for klass, counts in sorted((hist.get("counts") or {}).items()):
        doc.histogram(
            "job_duration_seconds",
            "Seconds a worker held each finished job, by device class.",
            list(hist.get("le") or []),
            list(counts),
            float((hist.get("sum_s") or {}).get(klass, 0.0)),
            {"class": klass},
        )
    for source, reasons in sorted((run.get("failures_by_reason") or {}).items()):
        for reason, n in sorted(reasons.items()):
            doc.add(
                "run_failures_total",
                "counter",
                "Failures of the run: dead-lettered jobs (source worker) and unreadable inputs (source scan), "
                "by reason class.",
                n,
                {"source": source, "reason": reason},
            )
    us = run.get("bookkeeping_us_per_job")
    doc.add(
        "bookkeeping_seconds_per_job",
        "gauge",
        "Manager CPU seconds spent per job.",
        us / 1e6 if isinstance(us, int | float) else None,
    )


def _throughput(doc: _Doc, tp: dict[str, Any]) -> None:
    totals = tp.get("totals") or {}
    for klass, t in sorted((totals.get("classes") or {}).items()):
        doc.add(
            "class_rows_total", "counter", "Rows embedded in the run, by device class.", t.get("rows"), {"class": klass}
        )
    for klass, t in sorted((totals.get("classes") or {}).items()):
        doc.add(
            "class_busy_seconds_total",
            "counter",
            "Seconds the workers of a device class held jobs in the run.",
            t.get("busy_s"),
            {"class": klass},
        )
    for klass, rate in sorted((tp.get("classes") or {}).items()):
        doc.add(
            "class_rows_per_busy_second",
            "gauge",
            "Rows per busy second by device class (rows / busy seconds; the summary's figure).",
            rate,
            {"class": klass},
        )
    for worker, rate in sorted((tp.get("workers") or {}).items()):
        doc.add(
            "worker_rows_per_busy_second",
            "gauge",
            "Rows per busy second of each worker in the run.",
            rate,
            {"worker": worker},
        )


def _workers(doc: _Doc, workers: list[dict[str, Any]]) -> None:
    for w in workers:
        if w.get("status") == "stopped":
            continue
        labels = {"worker": w["worker_id"], "kind": w["kind"], "device": w["device"], "host": w["host"]}
        doc.add("worker_healthy", "gauge", "1 when the worker's heartbeat is fresh.", 1 if w["healthy"] else 0, labels)
        doc.add(
            "worker_heartbeat_age_seconds",
            "gauge",
            "Seconds since the last heartbeat (Redis clock).",
            w.get("heartbeat_age_s"),
            labels,
        )
        doc.add("worker_rows_per_second", "gauge", "Rows per second the worker reports.", w.get("rows_per_s"), labels)
        doc.add(
            "worker_rows_total", "counter", "Rows the worker has embedded since it started.", w.get("rows_done"), labels
        )
        doc.add(
            "worker_jobs_total", "counter", "Jobs the worker has finished since it started.", w.get("jobs_done"), labels
        )
