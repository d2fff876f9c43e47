"""``python -m manager status``: the dashboard's picture in the terminal.

A run panel (stage, progress bar, ETA, counts, throughput per device
class), the worker table with health, the latest failures and the lanes,
drawn with rich. ``--watch`` redraws every few seconds; ``--json`` prints
the same snapshot the API's event stream sends.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from bus.settings import RedisSettings
from manager.fleet import FleetView
from manager.hub import FileRunProbe, StatusHub
from manager.redaction import Redactor


def _duration(s: float | None) -> str:
    if s is None:
        return "—"
    n = round(s)
    h, m, sec = n // 3600, (n % 3600) // 60, n % 60
    return f"{h}h {m}m" if h else f"{m}m {sec}s" if m else f"{sec}s"


def run_panel(run: dict[str, Any] | None, bus: dict[str, Any]) -> Panel:
    if not run:
        return Panel(Text("no run found (pass --run-dir or --output)", style="dim"), title="run")
    jobs = run.get("jobs") or {}
    planned = int(jobs.get("planned", 0))
    resolved = int(jobs.get("done", 0)) + int(jobs.get("failed", 0))
    ratio = float(run.get("progress") or 0.0)
    controls = bus.get("controls") or run.get("controls") or {}
    flags = " ".join(f"[yellow]{k}[/]" for k in ("paused", "drain") if controls.get(k))
    head = Text.from_markup(f"[bold]{run.get('run_id')}[/]  stage [bold cyan]{run.get('stage')}[/]  {flags}")
    bar = Table.grid(padding=(0, 1))
    bar.add_row(
        ProgressBar(total=1.0, completed=ratio, width=50),
        Text(
            f"{resolved}/{planned} jobs ({ratio:.1%})  "
            + ("finished" if run.get("final") else f"ETA {_duration(run.get('eta_s'))}")
        ),
    )
    counts = Text(
        f"done {jobs.get('done', 0)}  skipped {jobs.get('skipped', 0)}  "
        f"pending {int(jobs.get('pending', 0)) + int(jobs.get('lost', 0))}  failed {jobs.get('failed', 0)}  "
        f"scan errors {jobs.get('scan_errors', 0)}  "
        f"rows {run.get('rows', 0):,}  {run.get('rows_per_s', 0):,.1f} rows/s now"
    )
    classes = (run.get("throughput") or {}).get("classes") or {}
    speed = Text(
        "rows per busy second by device class: "
        + (", ".join(f"{k} {v:,.1f}" for k, v in sorted(classes.items())) or "—"),
        style="dim",
    )
    parts: list[RenderableType] = [head, bar, counts, speed]
    if run.get("error"):
        parts.append(Text(f"error: {run['error']}", style="red"))
    return Panel(Group(*parts), title="run", border_style="cyan")


def middle_ellipsis(text: str, width: int = 60) -> str:
    """``text`` cut to ``width`` characters by dropping its middle (a path
    keeps its start and its file name)."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head) :]


def workers_table(workers: list[dict[str, Any]]) -> Table:
    """Workers not stopped; the stopped ones (said so, or silent 5 min) are counted in the title."""
    stopped = sum(1 for w in workers if w.get("status") == "stopped")
    workers = [w for w in workers if w.get("status") != "stopped"]
    t = Table(
        title=f"workers ({sum(w['healthy'] for w in workers)} healthy of {len(workers)}"
        + (f"; {stopped} stopped, not shown)" if stopped else ")"),
        box=box.SIMPLE,
        title_justify="left",
    )
    for col in ("", "worker", "host", "kind", "device", "version", "state", "current job"):
        t.add_column(col)
    for col in ("jobs", "rows/s", "heartbeat"):
        t.add_column(col, justify="right")
    for w in workers:
        age = w.get("heartbeat_age_s")
        t.add_row(
            "[green]●[/]" if w["healthy"] else "[red]●[/]",
            w["worker_id"],
            w["host"],
            w["kind"],
            w["device"],
            w["version"],
            w["state"],
            middle_ellipsis(w.get("current_job") or "—"),
            str(w.get("jobs_done", 0)),
            f"{w.get('rows_per_s_observed') or w.get('rows_per_s') or 0:,.1f}",
            "never" if age is None else f"{age:.1f} s",
            style=None if w["healthy"] else "dim",
        )
    return t


def failed_table(failed: list[dict[str, Any]], total: int, scan_errors: list[dict[str, Any]] | None = None) -> Table:
    """Dead letters (``total`` in the stream) and the run's scan errors."""
    scan = scan_errors or []
    title = f"failures ({total} dead-lettered" + (f", {len(scan)} scan errors)" if scan else ")")
    t = Table(title=title, box=box.SIMPLE, title_justify="left")
    t.add_column("when")
    t.add_column("path")
    t.add_column("reason", overflow="fold")
    t.add_column("attempts", justify="right")
    for f in failed[:10]:
        when = time.strftime("%H:%M:%S", time.localtime(f.get("ts_ms", 0) / 1000))
        t.add_row(when, str(f.get("path") or f.get("job_id")), str(f.get("reason")), str(f.get("attempts")))
    for f in scan[:10]:
        t.add_row("scan", str(f.get("path")), str(f.get("reason")), "—")
    return t


def render(snapshot: dict[str, Any]) -> RenderableType:
    """The whole picture for one hub snapshot."""
    status = snapshot.get("status") or {}
    bus = status.get("bus") or {}
    parts: list[RenderableType] = [run_panel(status.get("run"), bus)]
    if not bus.get("reachable"):
        parts.append(Text(f"Redis: {bus.get('error', 'not configured (pass --redis-url)')}", style="red"))
        return Group(*parts)
    parts.append(workers_table(snapshot.get("workers") or []))
    parts.append(
        failed_table(
            snapshot.get("failed") or [], int(bus.get("failed") or 0), (status.get("run") or {}).get("scan_errors")
        )
    )
    lanes = Table(title="lanes", box=box.SIMPLE, title_justify="left")
    for col in ("lane", "waiting", "in flight", "retry later"):
        lanes.add_column(col, justify="left" if col == "lane" else "right")
    for lane in bus.get("lanes") or []:
        lanes.add_row(lane["lane"], str(lane["waiting"]), str(lane["in_flight"]), str(lane["delayed"]))
    parts.append(lanes)
    return Group(*parts)


class _NoBus:
    """Stands in for the fleet when no Redis URL was given."""

    redactor = Redactor()

    def __getattr__(self, name: str) -> Any:
        from bus.errors import BusUnavailable

        def unavailable(*_: Any, **__: Any) -> Any:
            raise BusUnavailable("no Redis URL given (--redis-url or EMBEDFLEET_REDIS_URL)")

        return unavailable


def make_hub(settings: RedisSettings | None, run_dir: Path | None, output_root: Path | None) -> StatusHub:
    fleet: Any = FleetView.from_settings(settings) if settings is not None else _NoBus()
    return StatusHub(fleet, run=FileRunProbe(run_dir, output_root), settings=settings)


def main(
    settings: RedisSettings | None,
    run_dir: Path | None,
    output_root: Path | None,
    watch: float | None,
    as_json: bool,
    console: Console | None = None,
) -> int:
    hub = make_hub(settings, run_dir, output_root)
    console = console or Console()
    if as_json:
        console.print_json(json.dumps(hub.snapshot()))
        return 0
    if watch is None:
        console.print(render(hub.snapshot()))
        return 0
    try:
        with Live(render(hub.snapshot()), console=console, refresh_per_second=4, screen=False) as live:
            while True:
                time.sleep(max(0.5, watch))
                live.update(render(hub.snapshot()))
    except KeyboardInterrupt:
        return 0
