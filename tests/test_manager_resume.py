"""A manager killed mid-run (kill -9) and started again with the same
settings resumes the same run: one run dir, one journal, every job's
completion journaled exactly once (also those that happened while no
manager listened), the run ends ``done`` and ``final``, and
``verify-journal --redis-url`` finds the journal whole and complete. Other
dead runs of the same settings are closed and linked; a run dir a live
manager holds is refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from bus.settings import RedisSettings
from manager.__main__ import main as manager_main
from manager.coordinator import Coordinator, CoordinatorOptions, RunHeld
from manager.journal import Journal, verify_run
from manager.redaction import Redactor
from manager.resume import PLAN_FILE
from manager.state import read_state, write_atomic
from tests.support import ROOT
from tests.support.fakes import FakeWorker, make_jobs

MODEL = "all-MiniLM-L6-v2@0123456789abcdef"
FAST = CoordinatorOptions(poll_s=0.05, refresh_s=0.2, trim_every_s=0.2, state_every_s=0.2, registry_every_s=0.5)


def wait_for(cond: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def records(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    from corpus.generate import generate_corpus

    data = tmp_path / "data"
    generate_corpus(data, suffixes=1, subreddits=3, files_per_subreddit=10, rows_per_file=3, seed=4)
    return data


@pytest.fixture
def fleet(redis_client: redis.Redis) -> Iterator[list[FakeWorker]]:
    workers: list[FakeWorker] = []
    yield workers
    for w in workers:
        w.stop()


def serve_argv(settings: RedisSettings, data: Path) -> list[str]:
    url = f"redis://{settings.host}:{settings.port}/0"
    return ["serve", "--redis-url", url, "--namespace", settings.namespace, "--input", str(data), "--model", MODEL,
            "--no-api", "--no-advertise"]  # fmt: skip


def test_a_manager_killed_mid_run_is_resumed_and_its_journal_is_complete(
    settings: RedisSettings, corpus: Path, fleet: list[FakeWorker], capsys: pytest.CaptureFixture[str]
) -> None:
    log = corpus.parent / "serve.log"
    with open(log, "wb") as sink:
        first = subprocess.Popen(
            [sys.executable, "-m", "manager", *serve_argv(settings, corpus)], cwd=ROOT, stdout=sink, stderr=sink
        )
    try:
        runs = corpus / "runs"
        wait_for(lambda: any((d / PLAN_FILE).is_file() for d in runs.glob("*")) if runs.is_dir() else False)
        fleet.append(FakeWorker(settings, "w1", job_s=0.08).start())
        run_dir = next(runs.iterdir())
        wait_for(lambda: sum(r["type"] == "job_done" for r in records(run_dir)) >= 6)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        # While no manager listens: a worker starts, and jobs complete.
        fleet.append(FakeWorker(settings, "w2", job_s=0.08).start())
        time.sleep(0.5)
        dead = read_state(run_dir)
        assert dead["stage"] == "embedding" and not dead["final"]
    finally:
        if first.poll() is None:
            first.kill()
    rc = manager_main(serve_argv(settings, corpus))
    assert rc == 0, log.read_text()
    assert [d.name for d in (corpus / "runs").iterdir()] == [run_dir.name], "the same run, not a new one"
    state = read_state(run_dir)
    assert state["stage"] == "done" and state["final"] and state["resumed"]
    assert state["jobs"]["planned"] == 30 and state["jobs"]["done"] == 30
    recs = records(run_dir)
    done = Counter(r["data"]["job"] for r in recs if r["type"] == "job_done")
    assert len(done) == 30 and set(done.values()) == {1}, done
    assert any(r["type"] == "worker_started" and r["data"]["worker"] == "w2" for r in recs)
    assert [r["type"] for r in recs].count("run_resumed") == 1
    assert verify_run(run_dir).ok
    out = capsys.readouterr().out
    assert "jobs planned 30: done 30, skipped 0, failed 0" in out
    url = f"redis://{settings.host}:{settings.port}/0"
    assert manager_main(["verify-journal", str(run_dir), "--redis-url", url, "--namespace", settings.namespace]) == 0
    assert "COMPLETE: 30 jobs done in the run" in capsys.readouterr().out


def dead_run(co_config: dict[str, Any], run_dir: Path, run_id: str, started_ms: int) -> None:
    """What a manager killed while embedding leaves behind."""
    j = Journal(run_dir / "events.jsonl", run_id, Redactor([]))
    j.write("run_started", data=co_config)
    j.stage = "embedding"
    j.write("stage_started", data={"stage": "embedding"})
    j.close()
    write_atomic(
        run_dir / "state.json",
        {"run_id": run_id, "stage": "embedding", "final": False, "started_ms": started_ms, "config": co_config,
         "journal": {"head": j.head.to_dict()}},
    )  # fmt: skip


def test_older_dead_runs_are_closed_and_linked_to_the_run_that_resumes(
    settings: RedisSettings, tmp_path: Path, fleet: list[FakeWorker]
) -> None:
    out = tmp_path / "out"
    probe = Coordinator(settings, output_root=out, options=FAST, run_dir=tmp_path / "probe")
    config = probe._config()
    probe.lock.release()
    dead_run(config, out / "runs" / "old", "old", 1_000)
    dead_run(config, out / "runs" / "newer", "newer", 2_000)
    co = Coordinator(settings, output_root=out, options=FAST, resume=True)
    assert co.run_id == "newer" and co.closed_runs == ["old"]
    fleet.append(FakeWorker(settings, "w1").start())
    summary = co.run(jobs=make_jobs(5))
    assert summary.exit_code == 0
    old = read_state(out / "runs" / "old")
    assert old["final"] and old["stage"] == "interrupted" and old["continued_by"] == "newer"
    assert verify_run(out / "runs" / "old").ok and verify_run(out / "runs" / "newer").ok
    assert records(out / "runs" / "old")[-1]["data"]["continued_by"] == "newer"
    assert read_state(out / "runs" / "newer")["final"]


def test_a_run_dir_held_by_a_live_manager_is_refused(settings: RedisSettings, tmp_path: Path) -> None:
    live = Coordinator(settings, output_root=tmp_path, options=FAST, run_dir=tmp_path / "r")
    try:
        with pytest.raises(RunHeld):
            Coordinator(settings, output_root=tmp_path, options=FAST, run_dir=tmp_path / "r", resume=True)
    finally:
        live.lock.release()


def test_verify_journal_reports_a_missing_and_a_repeated_completion(
    settings: RedisSettings, tmp_path: Path, fleet: list[FakeWorker], redis_client: redis.Redis,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    co = Coordinator(settings, output_root=tmp_path, options=FAST)
    jobs = make_jobs(4)
    fleet.append(FakeWorker(settings, "w1").start())
    assert co.run(jobs=jobs).exit_code == 0
    url = f"redis://{settings.host}:{settings.port}/0"
    argv = ["verify-journal", str(co.run_dir), "--redis-url", url, "--namespace", settings.namespace]
    assert manager_main(argv) == 0
    # A job done on the bus that the journal never heard of, and a completion journaled twice.
    extra = make_jobs(1, prefix="extra")[0]
    with open(co.run_dir / PLAN_FILE, "a") as f:
        f.write(json.dumps({"before": False, "job": json.loads(extra.to_json())}) + "\n")
    redis_client.hset(f"{settings.namespace}:state", extra.id, "d")
    j = Journal(co.run_dir / "events.jsonl", co.run_id, Redactor([]))
    j.write("job_done", data={"job": jobs[0].id, "source": "worker"})
    j.close()
    os.remove(co.run_dir / "state.json")  # the head moved on: keep the chain check out of this test
    capsys.readouterr()
    assert manager_main(argv) == 1
    out = capsys.readouterr().out
    assert f"job {extra.id}: done on the bus, no job_done line" in out
    assert f"job {jobs[0].id}: 2 completion lines" in out
