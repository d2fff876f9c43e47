"""Figures that are true and agree: rows per busy second per worker and
class (not per second of the whole run), charts that spread each job's rows
over the seconds it ran, one failed count everywhere with scan errors apart,
and the summary printed once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import redis

from bus.settings import RedisSettings
from manager.coordinator import Coordinator, CoordinatorOptions
from manager.fleet import FleetView
from manager.hub import FileRunProbe, StatusHub
from manager.metrics import render
from manager.throughput import Throughput
from tests.support.fakes import FakeWorker, make_jobs

ROOT = Path(__file__).resolve().parent.parent
FAST = CoordinatorOptions(poll_s=0.05, refresh_s=0.2, trim_every_s=0.2, state_every_s=0.2, registry_every_s=0.5)


def journal(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]


def samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_rates_are_rows_per_busy_second_not_per_second_of_the_run() -> None:
    tp = Throughput(bucket_s=5.0)
    # Two python/cpu workers, 10 rows/s each while busy; one rust/cpu at 40 rows/s.
    tp.add("p1", "python/cpu", 100, seconds=10.0, end_s=1000.0)
    tp.add("p2", "python/cpu", 200, seconds=20.0, end_s=1010.0)
    tp.add("r1", "rust/cpu", 400, seconds=10.0, end_s=1010.0)
    rates = tp.busy_rates()
    assert rates["classes"] == {"python/cpu": 10.0, "rust/cpu": 40.0}
    assert rates["workers"] == {"p1": 10.0, "p2": 10.0, "r1": 40.0}
    assert tp.totals()["classes"]["python/cpu"] == {"rows": 300, "busy_s": 30.0, "jobs": 2}
    # The fleet's current speed: every worker that finished a job recently, at its own speed.
    assert tp.current_rate(now_s=1011.0) == 60.0
    assert tp.current_rate(now_s=1100.0) == 0.0  # nobody has finished anything for long


def test_charts_spread_each_jobs_rows_over_the_seconds_it_ran() -> None:
    tp = Throughput(bucket_s=5.0)
    for i in range(6):  # one worker, back to back 20 s jobs of 200 rows: 10 rows/s all along
        tp.add("w", "python/cpu", 200, seconds=20.0, end_s=1000.0 + 20 * (i + 1))
    series = tp.series(now_s=1125.0, points=30)
    values = [v for t, v in zip(series["t"], series["classes"]["python/cpu"], strict=True) if 1000 <= t < 1120]
    assert values == [10.0] * 24  # flat, not a spike of 40 rows/s every fourth bucket
    hist = tp.histogram()
    assert hist["counts"]["python/cpu"][hist["le"].index(30.0)] == 6 and hist["sum_s"]["python/cpu"] == 120.0


def slow_clusterer(_req: Any) -> dict[str, Any]:
    time.sleep(1.0)
    return {"clusters": 1}


def test_summary_status_api_terminal_and_metrics_give_the_same_rates(
    settings: RedisSettings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    co = Coordinator(settings, output_root=tmp_path / "out", options=FAST)
    workers = [
        FakeWorker(settings, "py-1", kind="python", device="cpu", job_s=0.1, rows_per_job=50),
        FakeWorker(settings, "py-2", kind="python", device="cpu", job_s=0.2, rows_per_job=50),
        FakeWorker(settings, "rs-1", kind="rust", device="cpu", job_s=0.05, rows_per_job=50),
    ]
    try:
        # Start-up idle time and an idle tail would dilute a per-run rate; not a busy-time one.
        for w in workers:
            w.start()
        summary = co.run(jobs=make_jobs(24), cluster=slow_clusterer)
    finally:
        for w in workers:
            w.stop()
    # The truth, from the journal: rows ÷ seconds of each class's job_done events.
    rows: dict[str, int] = defaultdict(int)
    busy: dict[str, float] = defaultdict(float)
    for r in journal(co.run_dir):
        if r["type"] == "job_done":
            klass = "rust/cpu" if r["data"]["worker"] == "rs-1" else "python/cpu"
            rows[klass] += r["data"]["rows"]
            busy[klass] += r["data"]["seconds"]
    truth = {k: round(rows[k] / busy[k], 2) for k in rows}
    assert summary.throughput == truth
    # A rate per second of the whole run (clustering included) would be far lower.
    assert truth["rust/cpu"] > 600 and rows["rust/cpu"] / summary.seconds < 0.6 * truth["rust/cpu"]

    state = json.loads((co.run_dir / "state.json").read_text())
    assert state["throughput"]["classes"] == truth
    hub = StatusHub(FleetView.from_settings(settings), run=FileRunProbe(co.run_dir), settings=settings)
    api_status, api_workers = hub.status_and_workers()
    assert api_status["run"]["throughput"]["classes"] == truth
    scraped = samples(render(api_status, api_workers))
    for klass, rate in truth.items():
        assert scraped[f'embedfleet_class_rows_per_busy_second{{class="{klass}"}}'] == rate
        assert scraped[f'embedfleet_class_rows_total{{class="{klass}"}}'] == rows[klass]
    assert "rows per busy second by device class: python/cpu " in summary.render()
    terminal = json.loads(
        subprocess.run(
            [sys.executable, "-m", "manager", "status", "--run-dir", str(co.run_dir), "--json"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert terminal["status"]["run"]["throughput"]["classes"] == truth


def test_failed_counts_agree_and_scan_errors_are_counted_apart(
    settings: RedisSettings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    from corpus.generate import generate_corpus

    data = tmp_path / "data"
    paths = generate_corpus(data, suffixes=1, subreddits=2, files_per_subreddit=3, rows_per_file=10, seed=2)
    for name in ("broken-1.parquet", "broken-2.parquet", "broken-3.parquet"):
        (paths[0].parent / name).write_bytes(b"PAR1 not parquet at all")
    bad = {str(p.relative_to(data)) for p in paths[:2]}
    worker = FakeWorker(settings, "w", fail=lambda j: f"{j.path}: missing column 'text'" if j.path in bad else None)
    worker.start()
    try:
        co = Coordinator(settings, output_root=data, input_root=data, model="m@0123456789abcdef", options=FAST)
        summary = co.run()
    finally:
        worker.stop()
    assert (summary.planned, summary.done, len(summary.failed), len(summary.scan_errors)) == (6, 4, 2, 3)
    text = summary.render()
    assert "jobs planned 6: done 4, skipped 0, failed 2, pending 0; scan errors 3" in text
    assert text.count("SCAN ERROR ") == 3 and text.count("FAILED ") == 2

    state = json.loads((co.run_dir / "state.json").read_text())
    assert state["jobs"]["failed"] == 2 and state["jobs"]["scan_errors"] == 3
    assert {e["path"] for e in state["scan_errors"]} == {
        str((paths[0].parent / n).relative_to(data))
        for n in ("broken-1.parquet", "broken-2.parquet", "broken-3.parquet")
    }
    out = subprocess.run(
        [sys.executable, "-m", "manager", "status", "--run-dir", str(co.run_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout
    assert "failed 2  scan errors 3" in out
    scraped = samples(render({"run": state}, []))
    assert scraped['embedfleet_run_jobs{state="failed"}'] == 2 and scraped["embedfleet_run_scan_errors"] == 3
    assert scraped['embedfleet_run_failures_total{reason="missing_column_text",source="worker"}'] == 2
    assert sum(v for k, v in scraped.items() if k.startswith('embedfleet_run_failures_total{reason="not_a')) == 3


def test_the_summary_is_printed_once(settings: RedisSettings, redis_client: redis.Redis, tmp_path: Path) -> None:
    from corpus.generate import generate_corpus

    data = tmp_path / "data"
    generate_corpus(data, suffixes=1, subreddits=1, files_per_subreddit=2, rows_per_file=10, seed=4)
    worker = FakeWorker(settings, "w").start()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "manager", "serve", "--redis-url", f"redis://{settings.host}:{settings.port}/0",
             "--namespace", settings.namespace, "--input", str(data), "--model", "m@0123456789abcdef",
             "--no-api", "--no-advertise"],
            cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        worker.stop()
    assert proc.returncode == 0, proc.stderr
    both = proc.stdout + proc.stderr
    assert both.count("jobs planned 2: done 2") == 1, both
    assert both.count("journal: ") == 1
