"""Prometheus text exposition (format 0.0.4) of the run and the fleet.

Written by hand: a few gauges and counters do not justify a client library,
and the values come from one snapshot, so a scrape is consistent.
"""

from __future__ import annotations

from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STAGES = ("init", "scanning", "embedding", "clustering", "done", "error", "interrupted")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in sorted(labels.items())) + "}"


class _Doc:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self._declared: set[str] = set()

    def add(
        self, name: str, kind: str, help_: str, value: float | int | None, labels: dict[str, str] | None = None
    ) -> None:
        if value is None:
            return
        full = f"embedfleet_{name}"
        if full not in self._declared:
            self._declared.add(full)
            self.lines += [f"# HELP {full} {help_}", f"# TYPE {full} {kind}"]
        self.lines.append(f"{full}{_labels(labels or {})} {float(value):g}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render(status: dict[str, Any], workers: list[dict[str, Any]]) -> str:
    """Metrics text for one status snapshot and worker list."""
    doc = _Doc()
    bus = status.get("bus") or {}
    doc.add("bus_up", "gauge", "1 when Redis answered this scrape.", 1 if bus.get("reachable") else 0)
    for name, value in sorted((bus.get("stats") or {}).items()):
        doc.add("bus_jobs", "gauge", "Counters of the bus (<ns>:stats), by counter.", value, {"counter": name})
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
    _run(doc, status.get("run") or {})
    for w in workers:
        labels = {"worker": w["worker_id"], "kind": w["kind"], "device": w["device"], "host": w["host"]}
        doc.add("worker_healthy", "gauge", "1 when the worker's heartbeat is fresh.", 1 if w["healthy"] else 0, labels)
        doc.add(
            "worker_heartbeat_age_seconds",
            "gauge",
            "Seconds since the last heartbeat (Redis clock).",
            w.get("heartbeat_age_s"),
            labels,
        )
        doc.add("worker_rows_per_second", "gauge", "Rows per second the worker reports.", w["rows_per_s"], labels)
        doc.add(
            "worker_rows_total", "counter", "Rows the worker has embedded since it started.", w["rows_done"], labels
        )
    return doc.text()


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
    for name, value in sorted((run.get("jobs") or {}).items()):
        doc.add("run_jobs", "gauge", "Jobs of the current run, by state.", value, {"state": name})
    doc.add("run_progress_ratio", "gauge", "Share of the run's jobs done or failed.", run.get("progress"))
    doc.add("run_eta_seconds", "gauge", "Estimated seconds left in the embedding stage.", run.get("eta_s"))
    doc.add("run_rows_total", "counter", "Rows embedded during the run.", run.get("rows"))
    doc.add("run_model_calls_total", "counter", "Texts sent to the model during the run.", run.get("model_calls"))
    doc.add("run_rows_reused_total", "counter", "Rows whose vector came from the reuse store.", run.get("rows_reused"))
    doc.add("run_rows_per_second", "gauge", "Rows per second over the last 30 s.", run.get("rows_per_s"))
    for klass, rate in sorted(((run.get("throughput") or {}).get("classes") or {}).items()):
        doc.add("class_rows_per_second", "gauge", "Rows per second by worker kind and device.", rate, {"class": klass})
    doc.add("bookkeeping_microseconds_per_job", "gauge", "Manager CPU time per job.", run.get("bookkeeping_us_per_job"))
