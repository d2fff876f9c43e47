"""Bus benchmarks: raw throughput of the job protocol, and fleet scaling.

1. Throughput with a no-op embedder through 8 worker processes: each worker
   runs the Python worker's bus cycle (``RedisTransport.claim``, then
   ``complete.lua``, then a ``job_done`` event), nothing else. Baseline in
   the same run: the least any at-least-once Redis Streams consumer does
   (``XREADGROUP COUNT 1`` + ``XACK``), same processes, same Redis.
2. A simulated fleet of 1 to 64 workers whose embedder sleeps in proportion
   to the job's rows: throughput against the ideal (N workers each
   sleeping back to back, no bus at all), with the measured 1-worker fleet
   scaled by N as a second, measured baseline. Plotted to
   ``docs/bench/fleet_scaling.png``.

The Redis is a private redis-server configured as a fleet's (AOF,
``appendfsync everysec``). Worker processes wait on a "go" list so that
only the bus work is timed, not process start-up; a round ends when the
lane's consumer group has delivered every entry and nothing is pending.

``python -m bench.bench_bus worker ...`` is the simulated worker itself.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench.report import spread
from bus import constants as c
from bus.keys import Keys
from bus.messages import Job
from bus.redis_transport import RedisTransport
from bus.settings import RedisSettings
from tests.support.procs import ProcessGroup, free_port
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
FIGURE = ROOT / "docs" / "bench" / "fleet_scaling.png"
SMOKE_FIGURE = ROOT / "bench" / "out" / "fleet_scaling.smoke.png"
LANE = c.DEFAULT_LANE
MODEL = "bench-model@0000000000000000"
FLEET_SIZES = (1, 2, 4, 8, 16, 32, 64)


# -- the simulated worker (a separate process) ---------------------------------
def go_key(ns: str) -> str:
    return f"{ns}:bench:go"


def ready_key(ns: str) -> str:
    return f"{ns}:bench:ready"


def protocol_round(t: RedisTransport, wid: str, ms_per_row: float) -> None:
    """Claim, 'embed', complete and report until the lane is drained."""
    while True:
        d = t.claim(wid, [LANE], block_ms=0)
        if d is None:
            return
        rows = (d.job.rows[1] - d.job.rows[0]) if d.job.rows else 0
        if ms_per_row:
            time.sleep(rows * ms_per_row / 1000)
        t.complete(wid, d, rows)
        t.publish_event({"v": 1, "type": "job_done", "worker": wid, "kind": "python", "job": d.job.id,
                         "path": d.job.path, "rows": rows, "ts_ms": int(time.time() * 1000)})  # fmt: skip


def bare_round(r: redis.Redis, queue: str, wid: str) -> None:
    """The least an at-least-once Streams consumer does: read one, ack it."""
    while True:
        resp: Any = r.xreadgroup(c.GROUP, wid, {queue: ">"}, count=1)
        if not resp:
            return
        for _stream, entries in resp:
            for entry_id, _fields in entries:
                r.xack(queue, c.GROUP, entry_id)


def worker_main(url: str, ns: str, wid: str, mode: str, ms_per_row: float) -> int:
    t = RedisTransport.from_settings(RedisSettings.from_url(url, namespace=ns), lease_ms=600_000)
    t.ensure_lanes([LANE])
    t.r.incr(ready_key(ns))
    while True:
        got: Any = t.r.blpop([go_key(ns)], timeout=300)
        if got is None or got[1] == b"stop":
            return 0
        if mode == "protocol":
            protocol_round(t, wid, ms_per_row)
        else:
            bare_round(t.r, t.keys.queue(LANE), wid)


# -- the driver ------------------------------------------------------------------
@dataclass
class Fleet:
    """``size`` simulated workers of one mode in one namespace."""

    server: RedisServer
    procs: ProcessGroup
    ns: str
    mode: str
    size: int
    ms_per_row: float = 0.0
    rounds: int = 0

    def start(self, timeout_s: float = 120) -> None:
        r = self.server.client()
        r.delete(ready_key(self.ns), go_key(self.ns))
        for i in range(self.size):
            argv = [sys.executable, "-m", "bench.bench_bus", "worker", self.server.url, self.ns, f"{self.mode}-{i}",
                    self.mode, str(self.ms_per_row)]  # fmt: skip
            self.procs.start(f"{self.ns}-{i}", argv)
        deadline = time.monotonic() + timeout_s
        while int(r.get(ready_key(self.ns)) or 0) < self.size:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.size} {self.mode} workers did not start:\n{self.procs.logs(500)}")
            time.sleep(0.05)

    def stop(self) -> None:
        r = self.server.client()
        r.rpush(go_key(self.ns), *["stop"] * self.size)

    def jobs(self, rows: list[int]) -> list[Job]:
        self.rounds += 1
        return [
            Job.create(f"chains/bench/r{self.rounds}/f{i}.parquet", f"{n}-{i}", MODEL, rows=(0, n))
            for i, n in enumerate(rows)
        ]

    def load(self, jobs: list[Job]) -> None:
        """Put a round's jobs on the lane (not timed)."""
        settings = RedisSettings.from_url(self.server.url, namespace=self.ns)
        if self.mode == "protocol":
            from manager import scan

            scan.enqueue(settings, jobs)
            return
        r = self.server.client()
        queue = Keys(self.ns).queue(LANE)
        try:
            r.xgroup_create(queue, c.GROUP, id="0", mkstream=True)
        except redis.exceptions.ResponseError:
            pass
        pipe = r.pipeline(transaction=False)
        for j in jobs:
            pipe.xadd(queue, {c.JOB_FIELD: j.to_json()})
        pipe.execute()

    def drained(self, r: redis.Redis) -> bool:
        """Every entry delivered (lag 0) and acknowledged (nothing pending): one call."""
        queue = Keys(self.ns).queue(LANE)
        groups: Any = r.xinfo_groups(queue)
        g = next(g for g in groups if g["name"] in (c.GROUP, c.GROUP.encode()))
        if int(g["pending"]):
            return False
        if g.get("lag") is not None:
            return int(g["lag"]) == 0
        return bool(g["last-delivered-id"] == r.xinfo_stream(queue)["last-generated-id"])

    def round(self, rows: list[int], timeout_s: float = 600) -> float:
        """Run one round of jobs with these row counts; return its seconds."""
        self.load(self.jobs(rows))
        r = self.server.client()
        t0 = time.perf_counter()
        r.rpush(go_key(self.ns), *["go"] * self.size)
        while not self.drained(r):
            if time.perf_counter() - t0 > timeout_s:
                raise RuntimeError(f"round did not drain in {timeout_s} s:\n{self.procs.logs(500)}")
            time.sleep(0.005)
        return time.perf_counter() - t0


@contextmanager
def private_redis() -> Iterator[tuple[RedisServer, ProcessGroup]]:
    with tempfile.TemporaryDirectory(prefix="efbench-") as tmp:
        procs = ProcessGroup(Path(tmp) / "logs")
        try:
            server = RedisServer(Path(tmp) / "redis", free_port(), procs)
            server.start()
            yield server, procs
        finally:
            procs.close()


# -- 1. throughput ---------------------------------------------------------------
def throughput(smoke: bool) -> tuple[dict[str, list[float]], int]:
    """Jobs/s of the protocol and of the bare baseline, 8 workers each."""
    n_jobs, repeats, workers = (800, 1, 8) if smoke else (10_000, 5, 8)
    rates: dict[str, list[float]] = {"protocol": [], "bare": []}
    with private_redis() as (server, procs):
        fleets = {m: Fleet(server, procs, f"bb{m[0]}", m, workers) for m in rates}
        for f in fleets.values():
            f.start()
        for _ in range(repeats):
            for mode, f in fleets.items():
                rates[mode].append(n_jobs / f.round([0] * n_jobs))
        for f in fleets.values():
            f.stop()
    return rates, n_jobs


# -- 2. fleet scaling ------------------------------------------------------------
def fleet_rows(size: int, per_worker: int, seed: int) -> list[int]:
    """Row counts of a round: ``per_worker`` jobs per worker, 50..150 rows."""
    import random

    rng = random.Random(seed)
    return [rng.randint(50, 150) for _ in range(size * per_worker)]


def list_schedule_s(rows: list[int], size: int, ms_per_row: float) -> float:
    """Makespan if each free worker took the next job at no cost (the tail bound)."""
    import heapq

    free = [0.0] * size
    for n in rows:
        heapq.heappush(free, heapq.heappop(free) + n * ms_per_row / 1000)
    return max(free)


def scaling(smoke: bool) -> list[dict[str, Any]]:
    sizes = (1, 2, 4) if smoke else FLEET_SIZES
    ms_per_row, per_worker, repeats = (0.5, 4, 1) if smoke else (2.0, 24, 3)
    out = []
    with private_redis() as (server, procs):
        for size in sizes:
            f = Fleet(server, procs, f"bf{size}", "protocol", size, ms_per_row)
            f.start()
            runs = []
            for rep in range(repeats):
                rows = fleet_rows(size, per_worker, seed=size * 100 + rep)
                seconds = f.round(rows)
                ideal = sum(rows) * ms_per_row / 1000 / size
                bound = list_schedule_s(rows, size, ms_per_row)
                runs.append({"seconds": seconds, "ideal": ideal, "bound": bound, "jobs": len(rows), "rows": sum(rows)})
            f.stop()
            out.append({"size": size, "runs": runs, "ms_per_row": ms_per_row})
    return out


def plot(points: list[dict[str, Any]], path: Path) -> None:
    """Throughput against ideal (left) and efficiency with the 90% target (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    sizes = [p["size"] for p in points]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=120)
    left.plot(sizes, [p["ideal_rows_per_s"] for p in points], "--", color="grey", label="ideal: N sleeping workers")
    left.plot(sizes, [p["rows_per_s"] for p in points], "o-", color="tab:orange", label="measured (median)")
    left.set_xscale("log", base=2)
    left.set_yscale("log", base=2)
    left.set_ylabel("rows per second")
    left.set_title("Throughput")
    left.yaxis.set_major_formatter(ScalarFormatter())
    right.axhline(90, color="tab:red", lw=1, label="target: 90% of ideal")
    right.plot(sizes, [100 * statistics.median(p["effs"]) for p in points], "o-", color="tab:orange",
               label="% of ideal (median, min-max)")  # fmt: skip
    right.fill_between(sizes, [100 * min(p["effs"]) for p in points], [100 * max(p["effs"]) for p in points],
                       color="tab:orange", alpha=0.2)  # fmt: skip
    right.plot(sizes, [100 * statistics.median(p["bus"]) for p in points], "s:", color="tab:blue",
               label="% of zero-cost list schedule")  # fmt: skip
    right.set_xscale("log", base=2)
    right.set_ylim(80, 101)
    right.set_ylabel("% of ideal")
    right.set_title("Efficiency")
    for ax in (left, right):
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.set_xlabel("simulated workers (processes)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower left" if ax is right else "upper left")
    fig.suptitle(f"Fleet scaling on one Redis: embedder sleeping {points[0]['ms_per_row']:g} ms per row")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def summarise(fleet: list[dict[str, Any]]) -> list[dict[str, Any]]:
    base = statistics.median(r["rows"] / r["seconds"] for r in fleet[0]["runs"]) / fleet[0]["size"]
    points = []
    for p in fleet:
        rates = [r["rows"] / r["seconds"] for r in p["runs"]]
        effs = [r["ideal"] / r["seconds"] for r in p["runs"]]
        bus = [r["bound"] / r["seconds"] for r in p["runs"]]
        points.append({
            "size": p["size"], "rows_per_s": statistics.median(rates), "rates": rates, "effs": effs, "bus": bus,
            "ideal_rows_per_s": p["size"] * 1000 / p["ms_per_row"], "linear_rows_per_s": p["size"] * base,
            "ms_per_row": p["ms_per_row"],
        })  # fmt: skip
    return points


# -- the report ------------------------------------------------------------------
def pct(values: list[float]) -> str:
    return spread([100 * v for v in values], "{:.1f}")


def throughput_table(rates: dict[str, list[float]], n_jobs: int) -> dict[str, Any]:
    bare = statistics.median(rates["bare"])
    rows = [
        ["embedfleet protocol: claim + complete.lua + event", spread(rates["protocol"], "{:.0f}"),
         f"{statistics.median(rates['protocol']) / bare:.2f}"],
        ["baseline: XREADGROUP + XACK", spread(rates["bare"], "{:.0f}"), "1.00"],
    ]  # fmt: skip
    caption = f"No-op embedder, 8 worker processes, {n_jobs} jobs per round (jobs/s, median (min-max))"
    return {"caption": caption, "columns": ["consumer", "jobs/s", "ratio to baseline"], "rows": rows}


def fleet_table(fleet: list[dict[str, Any]]) -> dict[str, Any]:
    rows = [
        [p["size"], spread(p["rates"], "{:.0f}"), f"{p['ideal_rows_per_s']:.0f}", pct(p["effs"]),
         f"{100 * p['rows_per_s'] / p['linear_rows_per_s']:.1f}", pct(p["bus"])]
        for p in fleet
    ]  # fmt: skip
    columns = ["workers", "rows/s", "ideal rows/s", "% of ideal", "% of N x 1-worker", "% of zero-cost list schedule"]
    caption = (f"Simulated fleet, embedder sleeping {fleet[0]['ms_per_row']:g} ms per row (rows/s and %, "
               "median (min-max); % of ideal = ideal time / measured time)")  # fmt: skip
    return {"caption": caption, "columns": columns, "rows": rows}


def check(test: str, expected: str, measured: str, ok: bool) -> dict[str, str]:
    return {"test": test, "expected": expected, "measured": measured, "status": "pass" if ok else "fail"}


def plan(smoke: bool, jobs_per_s: float, size: int, eff: float) -> list[dict[str, str]]:
    """The claims; a smoke run is too small to test them and only shows it ran."""
    if smoke:
        return [
            check("bus benchmark, smoke sizes (claims are checked by the full run)", "runs",
                  f"{jobs_per_s:.0f} jobs/s; {size} workers at {100 * eff:.0f}% of ideal", True),
        ]  # fmt: skip
    return [
        check("bus throughput, no-op embedder, 8 worker processes", ">= 2000 jobs/s", f"{jobs_per_s:.0f} jobs/s",
              jobs_per_s >= 2000),
        check(f"simulated fleet of {size} workers", ">= 90% of ideal throughput", f"{100 * eff:.1f}%", eff >= 0.9),
    ]  # fmt: skip


def run(smoke: bool) -> dict[str, Any]:
    rates, n_jobs = throughput(smoke)
    fleet = summarise(scaling(smoke))
    figure = SMOKE_FIGURE if smoke else FIGURE
    plot(fleet, figure)
    proto = statistics.median(rates["protocol"])
    last = fleet[-1]
    eff = statistics.median(last["effs"])
    return {
        "title": "Job bus: protocol throughput and fleet scaling",
        "tables": [throughput_table(rates, n_jobs), fleet_table(fleet)],
        "figures": [{"caption": "Fleet scaling", "path": figure.relative_to(ROOT).as_posix()}],
        "plan": plan(smoke, proto, last["size"], eff),
        "notes": NOTES,
    }


NOTES = (
    "Each simulated worker is a separate Python process running the bus calls of the Python worker "
    "(`RedisTransport.claim`, `complete.lua`, `publish_event`) against one private redis-server with AOF "
    "(`appendfsync everysec`) on the same 2-core machine; the driver enqueues a round with "
    "`manager.scan.enqueue`, releases the workers together and stops the clock when the consumer group has "
    "delivered every entry and none is pending. Fleet rounds give each worker 24 jobs of 50-150 rows (0.2 s "
    "on average: real jobs, thousands of rows each, run for seconds to minutes, so the bus weighs less there); "
    "'% of ideal' is the time N workers would need sleeping back to back with no bus and perfect packing, over "
    "the measured time, so it includes the bus, the claim order and the tail of the last jobs (list scheduling "
    "of 24 random jobs per worker alone reaches about 96-97% of perfect packing at 64 workers; the last column "
    "compares with that schedule, so it isolates what the bus itself costs)."
)


if __name__ == "__main__":
    if len(sys.argv) >= 7 and sys.argv[1] == "worker":
        sys.exit(worker_main(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], float(sys.argv[6])))
    import json

    print(json.dumps(run(smoke="--smoke" in sys.argv), indent=1))
