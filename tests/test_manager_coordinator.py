"""The coordinator drives a run against a real Redis with fake workers:
stages in order, journal and state, summary and exit status, throughput per
worker and device class, usage, trimming, interruption, cluster-now,
clustering failures, re-runs, and a Redis outage in the middle of a run."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from bus.messages import Job
from bus.settings import RedisSettings
from manager.coordinator import ClusterRequest, Coordinator, CoordinatorOptions
from manager.journal import verify_run
from manager.state import read_state
from manager.summary import EXIT_DEAD_LETTERS, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK
from tests.support.fakes import FakeWorker, make_jobs
from tests.support.procs import free_port
from tests.support.redis_server import start_redis

FAST = CoordinatorOptions(poll_s=0.05, refresh_s=0.2, trim_every_s=0.2, state_every_s=0.2, registry_every_s=0.5)


def journal(co: Coordinator) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (co.run_dir / "events.jsonl").read_text().splitlines()]


def wait_for(cond: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


@pytest.fixture(autouse=True)
def _clean_bus(redis_client: redis.Redis) -> None:
    """Every test starts from a flushed database."""


@pytest.fixture
def fleet(settings: RedisSettings) -> Iterator[list[FakeWorker]]:
    workers: list[FakeWorker] = []
    yield workers
    for w in workers:
        w.stop()


def coordinator(settings: RedisSettings, tmp_path: Path, **kw: Any) -> Coordinator:
    return Coordinator(settings, output_root=tmp_path / "out", options=kw.pop("options", FAST), **kw)


def test_a_run_goes_through_every_stage_and_ends_done(
    settings: RedisSettings, tmp_path: Path, fleet: list[FakeWorker]
) -> None:
    co = coordinator(settings, tmp_path)
    fleet += [
        FakeWorker(settings, "py-mps", kind="python", device="mps").start(),
        FakeWorker(settings, "rs-cpu", kind="rust", device="cpu").start(),
    ]
    seen: list[ClusterRequest] = []
    summary = co.run(cluster=lambda req: seen.append(req) or {"clusters": 3}, jobs=make_jobs(30))

    assert summary.status == "done" and summary.exit_code == EXIT_OK
    assert (summary.planned, summary.done, summary.skipped, summary.failed, summary.pending) == (30, 30, 0, [], 0)
    assert summary.rows == 30 * 100 and summary.cluster == {"clusters": 3}
    assert set(summary.throughput) == {"python/mps", "rust/cpu"}
    assert len(seen) == 1 and not seen[0].partial and len(seen[0].outputs) == 30

    recs = journal(co)
    stages = [r["data"]["stage"] for r in recs if r["type"] == "stage_started"]
    assert stages == ["scanning", "embedding", "clustering", "done"]
    done = [r for r in recs if r["type"] == "job_done"]
    assert len(done) == 30 and all(r["stage"] == "embedding" for r in done)
    assert all({"wall_s", "cpu_s", "rss_bytes", "manager_cpu_s"} <= set(r["usage"]) for r in done)
    finished = {r["data"]["stage"]: r["usage"] for r in recs if r["type"] == "stage_finished"}
    assert set(finished) == {"scanning", "embedding", "clustering"}
    assert all({"cpu_s", "wall_s", "rss_bytes", "peak_rss_bytes"} <= set(u) for u in finished.values())
    assert recs[-1]["type"] == "run_finished" and recs[-1]["data"]["exit_code"] == 0

    state = read_state(co.run_dir)
    assert state["stage"] == "done" and state["final"] and state["progress"] == 1.0
    assert state["jobs"]["done"] == 30 and state["bookkeeping_us_per_job"] > 0
    assert set(state["usage"]) == {"scanning", "embedding", "clustering"}
    assert verify_run(co.run_dir).ok
    saved = json.loads((co.run_dir / "summary.json").read_text())
    assert saved["exit_code"] == 0 and saved["done"] == 30


def test_dead_letters_make_the_exit_status_non_zero(
    settings: RedisSettings, tmp_path: Path, fleet: list[FakeWorker]
) -> None:
    bad = {"chains/2024-01/s/part-0003.parquet", "chains/2024-01/s/part-0005.parquet"}
    fleet.append(
        FakeWorker(settings, "w", fail=lambda j: f"{j.path}: missing column 'text'" if j.path in bad else None).start()
    )
    co = coordinator(settings, tmp_path)
    summary = co.run(jobs=make_jobs(8))
    assert summary.status == "done" and summary.exit_code == EXIT_DEAD_LETTERS
    assert summary.done == 6 and sorted(f["path"] for f in summary.failed) == sorted(bad)
    assert all("missing column 'text'" in f["reason"] for f in summary.failed)
    text = summary.render()
    assert "FAILED chains/2024-01/s/part-0003.parquet: chains/2024-01/s/part-0003.parquet: missing column" in text
    dead = [r for r in journal(co) if r["type"] == "job_dead"]
    assert len(dead) == 2 and all(r["level"] == "error" and r["error"] for r in dead)
    assert [r["data"]["stage"] for r in journal(co) if r["type"] == "stage_started"][-1] == "done"


def test_throughput_is_kept_per_worker_and_per_device_class(
    settings: RedisSettings, tmp_path: Path, fleet: list[FakeWorker]
) -> None:
    fleet += [
        FakeWorker(settings, "a", kind="python", device="cuda", rows_per_job=10).start(),
        FakeWorker(settings, "b", kind="python", device="cuda", rows_per_job=10).start(),
        FakeWorker(settings, "c", kind="rust", device="cpu", rows_per_job=10).start(),
    ]
    co = coordinator(settings, tmp_path)
    co.run(jobs=make_jobs(24))
    totals = co.throughput_series()["totals"]
    assert sum(totals["workers"].values()) == 240
    assert set(totals["workers"]) == {"a", "b", "c"}
    assert set(totals["classes"]) == {"python/cuda", "rust/cpu"}
    assert totals["classes"]["python/cuda"] == totals["workers"]["a"] + totals["workers"]["b"]


def test_acknowledged_entries_are_trimmed(
    settings: RedisSettings, tmp_path: Path, redis_client: redis.Redis, fleet: list[FakeWorker]
) -> None:
    fleet.append(FakeWorker(settings, "w", job_s=0.0).start())
    co = coordinator(settings, tmp_path)
    co.run(jobs=make_jobs(40))
    assert co.figures.counters.trimmed > 0  # trimmed during the run
    co.transport.trim("default")  # the last periodic trim may have raced the last acknowledgement
    assert redis_client.xlen("eftest:q:default") <= 1  # MINID keeps the last delivered entry


def test_stop_interrupts_the_run(settings: RedisSettings, tmp_path: Path) -> None:
    co = coordinator(settings, tmp_path)
    threading.Timer(0.5, co.stop).start()
    summary = co.run(jobs=make_jobs(5))  # no worker: nothing would ever finish
    assert summary.status == "interrupted" and summary.exit_code == EXIT_INTERRUPTED
    assert summary.pending == 5
    assert read_state(co.run_dir)["stage"] == "interrupted"
    assert verify_run(co.run_dir).ok


def test_cluster_now_clusters_what_is_done(settings: RedisSettings, tmp_path: Path, fleet: list[FakeWorker]) -> None:
    fleet.append(FakeWorker(settings, "slow", job_s=0.05).start())
    co = coordinator(settings, tmp_path)
    assert co.request_cluster()[0] is False  # not embedding yet, no clusterer
    got: list[ClusterRequest] = []

    def press_when_some_are_done() -> None:
        wait_for(lambda: co.run_status()["jobs"]["done"] >= 3)
        ok, _ = co.request_cluster()
        assert ok

    t = threading.Thread(target=press_when_some_are_done)
    t.start()
    summary = co.run(cluster=lambda req: got.append(req) or {}, jobs=make_jobs(200))
    t.join(10)
    assert summary.status == "done" and got and got[0].partial
    assert 3 <= len(got[0].outputs) < 200 and summary.pending > 0
    assert summary.exit_code == EXIT_OK  # pending is not failure: the jobs stay queued
    assert co.request_cluster()[0] is False


def test_a_failing_clusterer_ends_the_run_in_error(
    settings: RedisSettings, tmp_path: Path, fleet: list[FakeWorker]
) -> None:
    fleet.append(FakeWorker(settings, "w").start())
    co = coordinator(settings, tmp_path)

    def boom(_: ClusterRequest) -> dict[str, Any]:
        raise MemoryError("out of memory in HDBSCAN")

    summary = co.run(cluster=boom, jobs=make_jobs(3))
    assert summary.status == "error" and summary.exit_code == EXIT_ERROR
    assert "MemoryError" in (summary.error or "")
    stages = [r["data"]["stage"] for r in journal(co) if r["type"] == "stage_started"]
    assert stages == ["scanning", "embedding", "clustering", "error"]


def test_a_rerun_finds_everything_done_and_skips_it(
    settings: RedisSettings, tmp_path: Path, fleet: list[FakeWorker]
) -> None:
    fleet.append(FakeWorker(settings, "w").start())
    jobs = make_jobs(6)
    first = coordinator(settings, tmp_path).run(jobs=jobs)
    assert first.done == 6
    second = coordinator(settings, tmp_path).run(jobs=jobs)
    assert (second.done, second.skipped, second.enqueued_new, second.enqueued_existing) == (0, 6, 0, 6)
    assert second.exit_code == EXIT_OK and second.run_id != first.run_id


def test_unreadable_events_and_control_changes_are_journaled(
    settings: RedisSettings, tmp_path: Path, redis_client: redis.Redis
) -> None:
    co = coordinator(settings, tmp_path)

    def poke() -> None:
        wait_for(lambda: co.run_status()["stage"] == "embedding")
        redis_client.xadd("eftest:events", {"event": "{not json"})
        time.sleep(0.3)
        redis_client.hset("eftest:control", "paused", "1")
        time.sleep(0.5)
        co.stop()

    t = threading.Thread(target=poke)
    t.start()
    co.run(jobs=make_jobs(2))
    t.join(10)
    types = [r["type"] for r in journal(co)]
    assert "worker_event_invalid" in types and "controls_changed" in types
    change = next(r for r in journal(co) if r["type"] == "controls_changed")
    assert change["data"] == {"paused": True, "drain": False}


def test_the_run_rides_out_a_redis_restart(tmp_path: Path) -> None:
    port = free_port()
    proc = start_redis(tmp_path / "redis", port)
    settings = RedisSettings.from_url(f"redis://127.0.0.1:{port}/0", namespace="outage")
    co = coordinator(settings, tmp_path)
    result: list[Any] = []
    runner = threading.Thread(target=lambda: result.append(co.run(jobs=make_jobs(5))))
    worker = None
    try:
        runner.start()
        wait_for(lambda: co.run_status()["stage"] == "embedding")
        proc.kill()
        proc.wait(10)
        wait_for(lambda: any(r["type"] == "bus_unavailable" for r in journal(co)))
        proc = start_redis(tmp_path / "redis", port)  # empty: every job's state was lost
        wait_for(lambda: any(r["type"] == "reconciled" for r in journal(co)))
        worker = FakeWorker(settings, "after").start()
        runner.join(30)
    finally:
        co.stop()
        runner.join(10)
        if worker is not None:
            worker.stop()
        proc.kill()
    summary = result[0]
    assert summary.status == "done" and summary.done == 5 and summary.exit_code == EXIT_OK
    types = [r["type"] for r in journal(co)]
    assert types.index("bus_unavailable") < types.index("bus_recovered") < types.index("reconciled")


def test_jobs_must_come_from_somewhere(settings: RedisSettings, tmp_path: Path) -> None:
    co = coordinator(settings, tmp_path)  # no input root, no model, no jobs
    summary = co.run()
    assert summary.status == "error" and "input_root" in (summary.error or "")


def test_jobs_outside_the_plan_are_journaled_but_not_counted(
    settings: RedisSettings, tmp_path: Path, fleet: list[FakeWorker]
) -> None:
    from bus.redis_transport import RedisTransport, connect

    co = coordinator(settings, tmp_path)
    other = Job.create("chains/2024-01/other/x.parquet", "1-1", "m")
    RedisTransport(connect(settings), namespace=settings.namespace).enqueue(other)
    fleet.append(FakeWorker(settings, "w").start())
    summary = co.run(jobs=make_jobs(3))
    assert summary.planned == 3 and summary.done == 3
    assert fleet[0].jobs_done == 4  # the stranger was first in the queue
    assert any(r["data"].get("job") == other.id for r in journal(co) if r["type"] == "job_done")


def test_a_run_scans_the_input_tree_itself(settings: RedisSettings, tmp_path: Path, fleet: list[FakeWorker]) -> None:
    from corpus.generate import generate_corpus

    data = tmp_path / "data"
    paths = generate_corpus(data, suffixes=1, subreddits=2, files_per_subreddit=2, rows_per_file=20, seed=1)
    broken = paths[0].parent / "broken.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    fleet.append(FakeWorker(settings, "w").start())
    co = Coordinator(
        settings, output_root=data, input_root=data, model="all-MiniLM-L6-v2@0123456789abcdef", options=FAST
    )
    summary = co.run()
    assert summary.planned == len(paths) and summary.done == len(paths)
    # An unreadable input is no job of the plan: a scan error, counted apart from failed jobs.
    assert summary.failed == [] and [f["path"] for f in summary.scan_errors] == [str(broken.relative_to(data))]
    assert "failed 0, pending 0; scan errors 1" in summary.render()
    assert summary.exit_code == EXIT_DEAD_LETTERS  # but it still makes the run's exit status non-zero
    recs = journal(co)
    assert any(r["type"] == "scan_error" and r["level"] == "error" for r in recs)
    scan = next(r for r in recs if r["type"] == "scan_finished")
    assert scan["counters"]["jobs"] == len(paths) and scan["data"]["report"]["totals"]


def test_a_rescan_queues_again_done_jobs_whose_outputs_are_gone(
    settings: RedisSettings, tmp_path: Path, fleet: list[FakeWorker]
) -> None:
    from corpus.generate import generate_corpus

    data = tmp_path / "data"
    paths = generate_corpus(data, suffixes=1, subreddits=1, files_per_subreddit=3, rows_per_file=10, seed=2)
    # The fake worker marks jobs done but writes no output: as if every output
    # had been deleted after the run.
    fleet.append(FakeWorker(settings, "w").start())

    def run() -> tuple[Any, list[dict[str, Any]]]:
        co = Coordinator(settings, output_root=data, input_root=data, model="all-MiniLM-L6-v2@0123", options=FAST)
        return co.run(), journal(co)

    first, recs = run()
    assert first.done == len(paths) and not any(r["type"] == "outputs_vanished" for r in recs)
    second, recs = run()
    vanished = [r for r in recs if r["type"] == "outputs_vanished"]
    assert len(vanished) == 1 and vanished[0]["level"] == "warning"
    assert vanished[0]["counters"]["jobs"] == len(paths)
    assert len(vanished[0]["data"]["outputs"]) == len(paths)
    # Embedded again, not skipped as done before.
    assert (second.done, second.skipped) == (len(paths), 0)


def test_a_coordinator_drives_one_run(settings: RedisSettings, tmp_path: Path, fleet: list[FakeWorker]) -> None:
    fleet.append(FakeWorker(settings, "w").start())
    co = coordinator(settings, tmp_path)
    co.run(jobs=make_jobs(1))
    with pytest.raises(RuntimeError, match="already started"):
        co.run(jobs=make_jobs(1))


def test_a_resent_event_is_journaled_and_counted_once(settings: RedisSettings, tmp_path: Path) -> None:
    """An XADD resent after its reply was lost arrives as a second stream entry
    with the same eid: the run's rows and the journal count it once."""
    co = coordinator(settings, tmp_path)
    [job] = make_jobs(1)
    event = {"v": 1, "type": "job_done", "worker": "w", "kind": "python", "ts_ms": 1, "job": job.id,
             "path": job.path, "rows": 7, "eid": "0123456789ab-1"}  # fmt: skip
    co.pump.on_event("1-0", json.dumps(event).encode())
    co.pump.on_event("1-1", json.dumps(event).encode())
    co.pump.on_event("1-2", json.dumps({**event, "eid": "0123456789ab-2"}).encode())
    done = [r for r in journal(co) if r["type"] == "job_done"]
    assert [r["data"]["entry"] for r in done] == ["1-0", "1-2"]
    assert co.figures.counters.rows == 14 and co.figures.counters.resent_events == 1


def test_every_published_event_gets_its_own_eid(settings: RedisSettings, redis_client: redis.Redis) -> None:
    from bus.redis_transport import RedisTransport, connect

    t = RedisTransport(connect(settings), namespace=settings.namespace)
    for i in range(3):
        t.publish_event({"v": 1, "type": "worker_started", "worker": f"w{i}"})
    t.publish_event({"v": 1, "type": "operator_action", "eid": "mine-1"})
    eids = [json.loads(f[b"event"])["eid"] for _, f in redis_client.xrange(f"{settings.namespace}:events")]
    assert len(set(eids)) == 4 and eids[-1] == "mine-1"
    assert all(len(e.split("-")[0]) == 12 for e in eids[:3])


def test_model_calls_and_reused_rows_reach_the_status_the_summary_and_metrics(
    settings: RedisSettings, tmp_path: Path
) -> None:
    from manager.metrics import render

    co = coordinator(settings, tmp_path)
    jobs = make_jobs(3)
    for i, (job, calls, reused) in enumerate(zip(jobs, (40, 0, 7), (0, 25, 3), strict=True)):
        event = {"v": 1, "type": "job_done", "worker": "w", "kind": "rust", "ts_ms": 1, "job": job.id,
                 "path": job.path, "rows": 50, "eid": f"0123456789ab-{i}",
                 "counts": {"model_calls": calls, "rows_reused": reused, "rows_embedded": 50}}  # fmt: skip
        co.pump.on_event(f"1-{i}", json.dumps(event).encode())
    co.pump.on_event("2-0", json.dumps({"v": 1, "type": "job_done", "worker": "w", "eid": "x-1",
                                   "counts": {"model_calls": "lots", "rows_reused": -5}}).encode())  # fmt: skip
    status = co._build_status()
    assert (status["model_calls"], status["rows_reused"]) == (47, 28)
    text = render({"run": status}, [])
    assert "embedfleet_run_model_calls_total 47" in text and "embedfleet_run_rows_reused_total 28" in text
    summary = co._finish()
    assert (summary.model_calls, summary.rows_reused) == (47, 28)
    assert "rows embedded 150: model calls 47, reused 28" in summary.render()
