"""Run a command and measure it alone: wall seconds, CPU seconds and peak RSS
of that process and nothing else.

``wait4``'s ``ru_maxrss`` (and ``RUSAGE_CHILDREN``) is not the child's own
peak when the parent is big: Python starts children with vfork/posix_spawn,
and Linux folds the high-water mark of the address space the child leaves at
exec, the parent's, into the child's figure. A benchmark process holding a
model (1.2 GB) or a million embeddings reported that as every child's peak.
So the command is started by a small launcher (this file run as a script
with ``python -I``, about 13 MB), whose own figure is what can leak in, and
the launcher reports its child's rusage:

    python -I bench/child.py RESULT_JSON -- CMD...
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class ChildRun:
    returncode: int
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    timed_out: bool = False


def run_measured(
    cmd: list[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout_s: float | None = None,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
    result_dir: Path | None = None,
) -> ChildRun:
    """Run ``cmd`` under the launcher; ``result_dir`` (default: the temporary directory) holds its report."""
    result_dir = result_dir or Path(tempfile.gettempdir())
    result_dir.mkdir(parents=True, exist_ok=True)
    report = result_dir / f"child-{os.getpid()}-{time.monotonic_ns()}.json"
    launcher = [sys.executable, "-I", str(ROOT / "bench" / "child.py"), str(report), "--", *cmd]
    t0 = time.perf_counter()
    proc = subprocess.Popen(launcher, cwd=cwd, env=env, stdout=stdout, stderr=stderr)
    timed_out = False
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.terminate()  # the launcher passes it on and still reports
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    wall = time.perf_counter() - t0
    if not report.exists():
        return ChildRun(proc.returncode, wall, float("nan"), float("nan"), timed_out)
    r = json.loads(report.read_text())
    report.unlink()
    return ChildRun(r["returncode"], wall, r["cpu_s"], r["peak_rss_mib"], timed_out)


def _launch(report: str, cmd: list[str]) -> int:
    import signal

    child = subprocess.Popen(cmd)

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        try:
            _pid, status, usage = os.wait4(child.pid, 0)
            break
        except InterruptedError:
            continue
    rc = os.waitstatus_to_exitcode(status)
    result = {"returncode": rc, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mib": usage.ru_maxrss / 1024}
    Path(report).write_text(json.dumps(result))
    return rc if rc >= 0 else 128 - rc


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) < 3 or args[1] != "--":
        sys.exit("usage: python -I bench/child.py RESULT_JSON -- CMD...")
    sys.exit(_launch(args[0], args[2:]))
