"""The end of a run, stated once: what was done, skipped, failed (with
reasons) and left pending, the inputs the scan could not read, and the exit
status scripts rely on.

"Failed" counts the plan's jobs that were dead-lettered, the same figure as
``manager status`` and the dashboard; inputs the scan could not read are
not jobs of the plan and are counted apart, as "scan errors".

Exit status (the whole table is in docs/manager.md): 0 every job done; 1 at
least one job dead-lettered or an input unreadable; 2 the run failed (an
error in the manager or the clusterer); 130 interrupted. Start-up failures
of the commands have their own codes (``manager.startup``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

EXIT_OK = 0
EXIT_DEAD_LETTERS = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


@dataclass
class RunSummary:
    run_id: str
    run_dir: str
    status: str
    """Final stage: ``done``, ``error`` or ``interrupted``."""
    planned: int = 0
    enqueued_new: int = 0
    enqueued_existing: int = 0
    done: int = 0
    """Jobs completed during this run (computed or found up to date)."""
    skipped: int = 0
    """Jobs that needed no computing: done before this run, or whose output
    a worker found already up to date."""
    failed: list[dict[str, Any]] = field(default_factory=list)
    """The plan's dead-lettered jobs, with their reasons."""
    scan_errors: list[dict[str, Any]] = field(default_factory=list)
    """Inputs the scan could not read (not jobs of the plan), with reasons."""
    pending: int = 0
    """Jobs still queued when the run ended (interrupted, or cluster-now)."""
    rows: int = 0
    model_calls: int = 0
    """Texts sent to the model: each distinct text once in the fleet."""
    rows_reused: int = 0
    """Rows whose vector came from the reuse store."""
    seconds: float = 0.0
    error: str | None = None
    cluster: dict[str, Any] | None = None
    throughput: dict[str, float] = field(default_factory=dict)
    """Rows per busy second per device class: rows ÷ the seconds its workers
    held jobs (``manager.throughput``)."""
    worker_throughput: dict[str, float] = field(default_factory=dict)
    """Rows per busy second per worker."""
    bookkeeping_us_per_job: float | None = None

    @property
    def exit_code(self) -> int:
        if self.status == "interrupted":
            return EXIT_INTERRUPTED
        if self.status == "error":
            return EXIT_ERROR
        return EXIT_DEAD_LETTERS if self.failed or self.scan_errors else EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exit_code": self.exit_code}

    def render(self, max_failures: int = 20) -> str:
        """Plain text for a terminal or a log."""
        lines = [
            f"run {self.run_id}: {self.status.upper()} in {self.seconds:.1f} s (exit status {self.exit_code})",
            f"  jobs planned {self.planned}: done {self.done}, skipped {self.skipped}, "
            f"failed {len(self.failed)}, pending {self.pending}; scan errors {len(self.scan_errors)}",
            f"  rows embedded {self.rows}: model calls {self.model_calls}, reused {self.rows_reused}",
        ]
        if self.throughput:
            speeds = ", ".join(f"{k} {v:,.1f}" for k, v in sorted(self.throughput.items()))
            lines.append(f"  rows per busy second by device class: {speeds}")
        problems = [("FAILED", f) for f in self.failed] + [("SCAN ERROR", f) for f in self.scan_errors]
        for label, f in problems[:max_failures]:
            lines.append(f"  {label} {f.get('path') or f.get('job_id')}: {f.get('reason')}")
        if len(problems) > max_failures:
            lines.append(f"  ... and {len(problems) - max_failures} more (see {self.run_dir}/summary.json)")
        if self.error:
            lines.append(f"  error: {self.error}")
        if self.cluster is not None:
            lines.append(f"  clustering: {describe_clustering(self.cluster)}")
        lines.append(f"  journal: {self.run_dir}/events.jsonl")
        return "\n".join(lines)


def describe_clustering(result: Any) -> str:
    """One line for the clusterer's result (its summary's headline figures)."""
    if not isinstance(result, dict) or "clusters" not in result:
        return str(result)
    text = f"{result['clusters']} clusters found"
    if "points" in result:
        text += f" over {result['points']:,} points"
    if "noise_share" in result:
        text += f" ({100 * float(result['noise_share']):.1f}% unclustered)"
    if "report" in result:
        text += f"; report {result['report']}"
    return text
