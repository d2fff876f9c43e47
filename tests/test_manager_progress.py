"""``make run``'s embedding stage in the terminal: plain periodic lines when
the output is not a terminal (a log, CI), a bar updated in place on one."""

from __future__ import annotations

import io
import threading
from typing import Any

from manager.progress import EmbeddingProgress, line


class Script:
    """A run status that moves on each time it is read."""

    def __init__(self, steps: list[dict[str, Any]]) -> None:
        self.steps = steps
        self.i = 0
        self.lock = threading.Lock()

    def __call__(self) -> dict[str, Any]:
        with self.lock:
            step = self.steps[min(self.i, len(self.steps) - 1)]
            self.i += 1
            return step


def status(stage: str, resolved: int, rows: int, rate: float, eta: float | None, failed: int = 0) -> dict[str, Any]:
    return {
        "stage": stage,
        "final": stage == "done",
        "jobs": {"planned": 40, "done": resolved - failed, "failed": failed},
        "rows": rows,
        "rows_per_s": rate,
        "eta_s": eta,
    }


def test_a_progress_line_has_jobs_rows_rate_and_eta() -> None:
    text = line(status("embedding", 10, 12345, 45.25, 130))
    assert text == "[run] embedding: 10/40 jobs (25.0%), 12,345 rows, 45.2 rows/s, ETA 2m 10s"
    assert line(status("embedding", 40, 50000, 0, 0, failed=2)).endswith("ETA 0s, 2 failed")


def test_without_a_terminal_it_prints_plain_lines_periodically_and_one_at_the_end() -> None:
    steps = [status("scanning", 0, 0, 0, None)]
    steps += [status("embedding", i, 1000 * i, 20.0, 40.0 - i) for i in range(0, 40)]
    steps += [status("clustering", 40, 40000, 0.0, None)]
    out = io.StringIO()
    progress = EmbeddingProgress(Script(steps), out, tty=False, every_s=0.05, tick_s=0.01).start()
    progress._thread.join(10)  # ends with the stage
    progress.stop()
    lines = out.getvalue().splitlines()
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue()  # no cursor tricks in a log
    assert all(x.startswith("[run] embedding: ") for x in lines)
    assert 3 <= len(lines) < 40  # periodic, not one per poll
    assert lines[0].startswith("[run] embedding: 0/40 jobs (0.0%), 0 rows")
    assert lines[-1] == "[run] embedding: 40/40 jobs (100.0%), 40,000 rows, 0.0 rows/s, ETA —"


def test_on_a_terminal_it_draws_a_bar() -> None:
    steps = [status("embedding", i, 100 * i, 5.0, 10.0) for i in range(5)] + [status("done", 40, 4000, 0.0, None)]
    out = io.StringIO()
    progress = EmbeddingProgress(Script(steps), out, tty=True, tick_s=0.01).start()
    progress._thread.join(10)
    progress.stop()
    text = out.getvalue()
    assert "embedding" in text and "40/40 jobs" in text and "4,000 rows" in text
