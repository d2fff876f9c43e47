"""What every scenario shares: the worker kinds it runs with, and its verdict.

``EMBEDFLEET_FAULT_KINDS`` (comma list, default ``python,rust``) picks the
worker kinds; ``mini`` (the harness's own bus-only worker) is accepted too,
which is how the harness was tested before the real workers existed.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from tests.fault.harness import Run, Verdict
from tests.fault.kinds import WorkerKind

KIND_NAMES = [k for k in os.environ.get("EMBEDFLEET_FAULT_KINDS", "python,rust").split(",") if k]
STAND_IN = {"python": "hash", "mini": "hash", "rust": "hash"}
"""The embedder each kind runs the scenarios with: each worker's hash stand-in
(``--embedder hash``: fast, exact comparison), since the model is not what a
fault scenario tests; ``MODEL_KINDS`` keeps a real-model run of each worker."""
KINDS = [WorkerKind(name, STAND_IN[name]) for name in KIND_NAMES]
"""Every kind, as the scenarios run it."""
MODEL_KINDS = [WorkerKind(name, "model") for name in KIND_NAMES if STAND_IN[name] != "model" and name != "mini"]
"""The real workers with the real model, where ``KINDS`` does not run it already."""


REPORT_ENV = "EMBEDFLEET_FAULT_REPORT"
"""When set, every scenario appends one JSON line with its verdict to this file
(``bench/bench_fault.py`` reads them)."""


def record(verdict: Verdict, run: Run, **facts: Any) -> None:
    """Print the verdict (shown with ``-s``) and append it to the report file."""
    q, o = verdict.queue, verdict.outputs
    line = {
        "test": os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0],
        "kind": run.kind.label,
        "jobs": q.enqueued,
        "completed": q.completed,
        "lost": q.n_lost,
        "double_counted": q.n_double_counted,
        "unexpected": len(q.unexpected),
        "dead": len(q.dead),
        "outputs_ok": o.ok,
        "stale_temps": len(o.stale_temps),
        "stats": verdict.snapshot.stats,
        "ts": time.time(),
        **facts,
    }
    print(json.dumps(line, default=str))
    path = os.environ.get(REPORT_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line, default=str) + "\n")


def assert_clean(verdict: Verdict, run: Run, **facts: Any) -> None:
    """0 lost, 0 double-counted, nothing unexpected, every output exactly once and equal."""
    record(verdict, run, **facts)
    assert verdict.queue.n_lost == 0, f"lost jobs: {verdict.summary()}\n{run.procs.logs(800)}"
    assert verdict.queue.n_double_counted == 0, f"double-counted: {verdict.summary()}\n{run.procs.logs(800)}"
    assert verdict.ok, f"{verdict.summary()}\n{run.procs.logs(800)}"
