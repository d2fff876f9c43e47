"""Live progress of the embedding stage in the terminal (``make run``).

On a terminal, a rich progress bar updated in place: jobs resolved of
planned, rows, the fleet's current rows/s and the ETA. Elsewhere (a log
file, CI, a pipe), a plain line every ``every_s`` seconds while something
changed, and one when the stage ends, so a log stays readable:

    [run] embedding: 120/480 jobs (25.0%), 12,345 rows, 45.2 rows/s, ETA 2m 10s

The figures are the run status's (``Coordinator.run_status()``), the same
the dashboard and ``manager status`` show.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

StatusFn = Callable[[], dict[str, Any]]


def duration(s: float | None) -> str:
    if s is None:
        return "—"
    n = round(s)
    h, m, sec = n // 3600, (n % 3600) // 60, n % 60
    return f"{h}h {m}m" if h else f"{m}m {sec}s" if m else f"{sec}s"


def figures(run: dict[str, Any]) -> tuple[int, int, str]:
    """(jobs resolved, jobs planned, "rows, rows/s, ETA") of a run status."""
    jobs = run.get("jobs") or {}
    resolved = int(jobs.get("done", 0)) + int(jobs.get("failed", 0))
    rest = (
        f"{int(run.get('rows') or 0):,} rows, {float(run.get('rows_per_s') or 0):,.1f} rows/s, "
        f"ETA {duration(run.get('eta_s'))}"
    )
    return resolved, int(jobs.get("planned", 0)), rest


def line(run: dict[str, Any]) -> str:
    """One plain progress line."""
    resolved, planned, rest = figures(run)
    share = f" ({resolved / planned:.1%})" if planned else ""
    failed = int((run.get("jobs") or {}).get("failed", 0))
    return f"[run] embedding: {resolved}/{planned} jobs{share}, {rest}" + (f", {failed} failed" if failed else "")


class EmbeddingProgress:
    """Shows the embedding stage's progress from a thread until ``stop()``."""

    def __init__(
        self,
        status: StatusFn,
        stream: TextIO | None = None,
        *,
        tty: bool | None = None,
        every_s: float = 10.0,
        tick_s: float = 0.5,
    ) -> None:
        self.status = status
        self.stream = stream if stream is not None else sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.every_s = every_s
        self.tick_s = tick_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="embedfleet-progress", daemon=True)

    def start(self) -> EmbeddingProgress:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _wait_for_embedding(self) -> dict[str, Any] | None:
        while not self._stop.is_set():
            run = self.status()
            if run.get("stage") == "embedding":
                return run
            if run.get("final"):
                return None
            self._stop.wait(self.tick_s)
        return None

    def _run(self) -> None:
        run = self._wait_for_embedding()
        if run is None:
            return
        if self.tty:
            self._bar()
        else:
            self._lines(run)

    def _still_embedding(self) -> dict[str, Any] | None:
        """The latest status while the stage lasts (and ``stop()`` was not called)."""
        if self._stop.wait(self.tick_s):
            return None
        run = self.status()
        return run if run.get("stage") == "embedding" else None

    def _lines(self, run: dict[str, Any]) -> None:
        last_text, waited = "", self.every_s
        current: dict[str, Any] | None = run
        while current is not None:
            run = current
            text = line(run)
            if waited >= self.every_s and text != last_text:
                print(text, file=self.stream, flush=True)
                last_text, waited = text, 0.0
            current = self._still_embedding()
            waited += self.tick_s
        final = self.status() or run
        if final.get("jobs"):
            text = line(final)
            if text != last_text:
                print(text, file=self.stream, flush=True)

    def _bar(self) -> None:
        console = Console(file=self.stream, force_terminal=True)
        columns = (
            TextColumn("[bold]embedding"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} jobs"),
            TaskProgressColumn(),
            TextColumn("{task.fields[rest]}"),
        )
        with Progress(*columns, console=console, refresh_per_second=4, transient=False) as bar:
            task = bar.add_task("embedding", total=None, rest="")
            current: dict[str, Any] | None = self.status()
            while current is not None:
                resolved, planned, rest = figures(current)
                bar.update(task, completed=resolved, total=planned or None, rest=rest)
                current = self._still_embedding()
            resolved, planned, rest = figures(self.status())
            bar.update(task, completed=resolved, total=planned or None, rest=rest)
