"""The worker loop over the in-memory bus: completion, skipping, dead letters,
retries, leases, prefetch, controls, lanes, watchdog, signals, reconnects.
A stand-in embedder keeps these fast; the real model is tested elsewhere."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bus.errors import BusUnavailable, TransientError
from bus.memory import MemoryTransport
from bus.messages import Job
from bus.transport import Delivery, Outcome
from workers import runtime
from workers.embedder import Encoded, HashEmbedder
from workers.paths import DataRoots
from workers.pipeline import EmbedPipeline, PreparedJob
from workers.result import JobResult
from workers.runtime import Worker, WorkerConfig, reason_for
from workers.supervision import EXIT_JOB_TIMEOUT, StopSignals
from workers.testing import enqueue_all, jobs_for, memory_backlog
from workers.writer import Provenance

MODEL = "all-MiniLM-L6-v2@test"
JOIN_S = 30


def write(root: Path, rel: str, texts: list[str | None]) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"text": pa.array(texts, pa.string())}), path)
    return path


@dataclass
class Rig:
    """An input tree, a memory bus, a pipeline and a way to run workers on them."""

    tmp: Path
    bus: MemoryTransport = field(default_factory=lambda: MemoryTransport(lease_ms=60_000))
    embedder: HashEmbedder = field(default_factory=lambda: HashEmbedder(MODEL))
    exits: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.roots = DataRoots.create(self.tmp / "in", self.tmp / "out")

    def files(self, n: int, rows: int = 5, sub: str = "sub") -> list[Path]:
        return [
            write(
                self.roots.input_root,
                f"chains/2024-01/{sub}/f{i}.parquet",
                [f"{sub} text {i}-{r}" for r in range(rows)],
            )
            for i in range(n)
        ]

    def enqueue(self, files: list[Path], lane: str = "default") -> list[Job]:
        jobs = jobs_for(self.roots.input_root, files, MODEL, lane=lane)
        assert enqueue_all(self.bus, jobs) == len(jobs)
        return jobs

    def pipeline(self, **kw: Any) -> EmbedPipeline:
        prov = Provenance("w", "python", "cpu", "fp32", "0")
        return EmbedPipeline(self.roots, kw.pop("embedder", self.embedder), prov, **kw)

    def worker(self, handler: Any = None, transport: Any = None, **cfg: Any) -> Worker:
        cfg.setdefault("burst", True)
        cfg.setdefault("handle_signals", False)
        cfg.setdefault("block_ms", 20)
        cfg.setdefault("retry_base_ms", 10)
        cfg.setdefault("controls_every_s", 0.02)
        bus = transport or self.bus
        return Worker(
            bus,
            handler or self.pipeline(),
            WorkerConfig(**cfg),
            backlog=memory_backlog(self.bus),
            hard_exit=self.exits.append,
        )

    def outputs(self) -> list[Path]:
        return sorted(p for p in self.roots.output_root.rglob("*") if p.is_file())


def run_in_thread(w: Worker) -> tuple[threading.Thread, list[int]]:
    codes: list[int] = []
    th = threading.Thread(target=lambda: codes.append(w.run()), daemon=True)
    th.start()
    return th, codes


def run(w: Worker) -> int:
    th, codes = run_in_thread(w)
    th.join(JOIN_S)
    assert not th.is_alive(), "worker did not finish"
    return codes[0]


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def events(bus: MemoryTransport, kind: str) -> list[dict[str, Any]]:
    return [e for e in bus.events if e["type"] == kind]


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


class Gate:
    """A handler wrapper that holds chosen jobs until released."""

    def __init__(self, inner: EmbedPipeline, hold: Callable[[Job], bool]) -> None:
        self.inner = inner
        self.hold = hold
        self.entered = threading.Event()
        self.release = threading.Event()

    def prepare(self, d: Delivery) -> PreparedJob:
        return self.inner.prepare(d)

    def run(self, prepared: PreparedJob, checkpoint: Callable[[], None]) -> JobResult:
        if self.hold(prepared.delivery.job):
            self.entered.set()
            assert self.release.wait(JOIN_S)
        return self.inner.run(prepared, checkpoint)


# -- the happy path -------------------------------------------------------------
def test_burst_worker_drains_the_queue_and_exits(rig: Rig) -> None:
    jobs = rig.enqueue(rig.files(4))
    assert run(rig.worker()) == 0
    assert len(rig.outputs()) == 4
    assert rig.bus.stats["done"] == 4 and rig.bus.stats["rows"] == 20 and rig.bus.stats.get("queued") == 0
    done = events(rig.bus, "job_done")
    assert sorted(e["job"] for e in done) == sorted(j.id for j in jobs)
    assert all(e["rows"] == 5 and e["counts"]["rows_total"] == 5 and e["kind"] == "python" for e in done)
    kinds = [e["type"] for e in rig.bus.events]
    assert kinds[0] == "worker_started" and kinds[-1] == "worker_stopped"
    assert rig.bus.workers == {}  # deregistered on exit


def test_burst_worker_leaves_an_empty_queue_without_waiting_out_a_claim(rig: Rig) -> None:
    # A claim would block a whole minute: a burst run must see the empty lanes
    # and leave instead (a benchmark or a cron drain pays that wait otherwise).
    rig.enqueue(rig.files(2))
    w = rig.worker(block_ms=60_000)
    th, codes = run_in_thread(w)
    th.join(JOIN_S)
    assert not th.is_alive() and codes == [0]
    assert rig.bus.stats["done"] == 2 and len(rig.outputs()) == 2


def test_worker_registers_a_record_while_running(rig: Rig) -> None:
    rig.enqueue(rig.files(1))
    gate = Gate(rig.pipeline(), lambda j: True)
    w = rig.worker(gate, worker_id="python-host-1", device="cpu", heartbeat_s=0.02, record_extra={"precision": "bf16"})
    th, _ = run_in_thread(w)
    assert gate.entered.wait(JOIN_S)
    wait_for(lambda: rig.bus.workers.get("python-host-1", {}).get("state") == "busy")
    rec = rig.bus.workers["python-host-1"]
    assert rec["kind"] == "python" and rec["pid"] == os.getpid() and rec["lanes"] == ["default"]
    assert rec["current_job"].startswith("chains/") and rec["precision"] == "bf16"
    gate.release.set()
    th.join(JOIN_S)
    assert rig.bus.stats["done"] == 1


def test_up_to_date_output_is_acknowledged_without_recomputing(rig: Rig) -> None:
    files = rig.files(2)
    rig.pipeline().run(rig.pipeline().prepare(Delivery(rig.enqueue(files[:1])[0], "default", "x")), lambda: None)
    rig.enqueue(files[1:])
    calls = len(rig.embedder.calls)
    assert run(rig.worker()) == 0
    assert len(rig.embedder.calls) == calls + 1  # only the second file was embedded
    assert rig.bus.stats["done"] == 2 and rig.bus.stats["skipped_existing"] == 1
    assert rig.bus.stats["rows"] == 10
    assert len(events(rig.bus, "job_skipped")) == 1


# -- bad input and permanent failures ---------------------------------------------
def test_every_bad_input_is_dead_lettered_with_a_reason_and_nothing_else_is_lost(rig: Rig, tmp_path: Path) -> None:
    good = rig.files(3)
    root = rig.roots.input_root / "chains/2024-01/bad"
    root.mkdir(parents=True)
    (root / "garbage.parquet").write_bytes(b"not a parquet file")
    (root / "empty.parquet").write_bytes(b"")
    pq.write_table(pa.table({"body": ["x"]}), root / "nocol.parquet")
    pq.write_table(pa.table({"text": [1, 2]}), root / "int.parquet")
    truncated = root / "truncated.parquet"
    pq.write_table(pa.table({"text": ["x"] * 50}), truncated)
    truncated.write_bytes(truncated.read_bytes()[:-20])
    outside = write(tmp_path, "outside.parquet", ["secret"])
    os.symlink(outside, root / "escape.parquet")
    bad = sorted(root.iterdir())
    jobs = rig.enqueue(good) + jobs_for(rig.roots.input_root, [root / p.name for p in bad], MODEL)
    assert enqueue_all(rig.bus, jobs[3:]) == len(bad)
    assert run(rig.worker(max_deliveries=5)) == 0
    assert rig.bus.stats["done"] == 3 and rig.bus.stats["dead"] == len(bad)
    assert len(rig.outputs()) == 3
    reasons = {d["job"].path.rsplit("/", 1)[-1]: d["reason"] for d in rig.bus.dead}
    assert set(reasons) == {p.name for p in bad}
    for name, reason in reasons.items():
        assert reason.startswith(f"chains/2024-01/bad/{name}: "), reason
    assert "not a readable parquet file" in reasons["garbage.parquet"]
    assert "not a readable parquet file" in reasons["empty.parquet"]
    assert "not a readable parquet file" in reasons["truncated.parquet"]
    assert "missing column 'text'" in reasons["nocol.parquet"]
    assert "has type int64" in reasons["int.parquet"]
    assert "outside its root" in reasons["escape.parquet"]
    assert all(d["attempts"] == 1 for d in rig.bus.dead)  # permanent: no retries
    assert len(events(rig.bus, "job_dead")) == len(bad)


def test_job_for_another_model_is_a_permanent_mismatch(rig: Rig) -> None:
    f = rig.files(1)[0]
    job = Job.create(f.relative_to(rig.roots.input_root).as_posix(), "1-1", "other-model@123")
    rig.bus.enqueue(job)
    run(rig.worker())
    assert rig.bus.dead[0]["reason"].startswith(f"{job.path}: job wants model other-model@123")


# -- transient failures -----------------------------------------------------------
class Flaky(HashEmbedder):
    """Fails ``failures`` times on the texts of the first file (``sub text 0-*``)."""

    def __init__(self, failures: int) -> None:
        super().__init__(MODEL)
        self.failures = failures

    def encode(self, texts: Any) -> Encoded:
        if self.failures > 0 and any(t.startswith("sub text 0-") for t in texts):
            self.failures -= 1
            raise TransientError("disk hiccup")
        return super().encode(texts)


def test_transient_errors_are_retried_with_doubling_backoff(rig: Rig) -> None:
    rig.enqueue(rig.files(1))
    assert run(rig.worker(handler=rig.pipeline(embedder=Flaky(2)), max_deliveries=5)) == 0
    assert rig.bus.stats["done"] == 1 and rig.bus.stats["retried"] == 2
    retries = events(rig.bus, "job_retry")
    assert [e["delay_ms"] for e in retries] == [10, 20]
    assert [e["attempt"] for e in retries] == [1, 2]
    assert retries[0]["error"] == "chains/2024-01/sub/f0.parquet: disk hiccup"


def test_transient_errors_dead_letter_after_max_deliveries_with_the_last_reason(rig: Rig) -> None:
    rig.enqueue(rig.files(2))
    flaky = Flaky(3)
    assert run(rig.worker(handler=rig.pipeline(embedder=flaky), max_deliveries=3)) == 0
    assert rig.bus.stats["dead"] == 1 and rig.bus.stats["done"] == 1
    assert rig.bus.dead[0]["attempts"] == 3
    assert rig.bus.dead[0]["reason"].endswith(": disk hiccup")


def test_unexpected_errors_are_retried_with_their_type_in_the_reason(rig: Rig) -> None:
    class Bug(HashEmbedder):
        def encode(self, texts: Any) -> Encoded:
            raise ZeroDivisionError("oops")

    rig.enqueue(rig.files(1))
    run(rig.worker(handler=rig.pipeline(embedder=Bug(MODEL)), max_deliveries=2))
    assert rig.bus.dead[0]["reason"] == "chains/2024-01/sub/f0.parquet: ZeroDivisionError: oops"


def test_a_job_that_killed_its_workers_is_dead_lettered_by_the_next_claimer(rig: Rig) -> None:
    rig.bus.lease_ms = 30
    job = rig.enqueue(rig.files(1))[0]
    first = rig.bus.claim("crashed-worker", ["default"], 0)
    assert first is not None
    rig.bus.errors[job.id] = f"{job.path}: killed by the kernel"
    time.sleep(0.05)
    run(rig.worker(max_deliveries=1))
    assert rig.bus.dead[0]["reason"] == f"{job.path}: killed by the kernel"
    assert rig.bus.dead[0]["attempts"] == 2 and rig.outputs() == []


def test_reason_always_starts_with_the_path() -> None:
    d = Delivery(Job.create("chains/a/b.parquet", "1-1", MODEL), "default", "1-0")
    assert reason_for(d, OSError(5, "Input/output error")).startswith("chains/a/b.parquet: OSError: ")
    assert reason_for(d, TransientError("chains/a/b.parquet: x")) == "chains/a/b.parquet: x"
    assert reason_for(d, TransientError("x")) == "chains/a/b.parquet: x"


# -- leases --------------------------------------------------------------------
class Frozen:
    """Wraps a transport; while ``frozen`` renewals silently do nothing (a
    stopped process), so the lease expires."""

    def __init__(self, inner: MemoryTransport) -> None:
        self.inner = inner
        self.frozen = threading.Event()

    def renew(self, consumer: str, d: Delivery) -> bool:
        return True if self.frozen.is_set() else self.inner.renew(consumer, d)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_late_completion_after_the_lease_was_taken_is_not_counted(rig: Rig) -> None:
    rig.bus.lease_ms = 100
    rig.enqueue(rig.files(1))
    frozen = Frozen(rig.bus)
    gate = Gate(rig.pipeline(), lambda j: True)
    w = rig.worker(gate, transport=frozen, lease_ms=100, burst=False)
    th, _ = run_in_thread(w)
    assert gate.entered.wait(JOIN_S)
    frozen.frozen.set()
    time.sleep(0.15)
    thief = rig.bus.claim("thief", ["default"], 0)
    assert thief is not None and thief.deliveries == 2
    frozen.frozen.clear()
    gate.release.set()
    wait_for(lambda: bool(events(rig.bus, "lease_lost")))
    w.stop.set()
    th.join(JOIN_S)
    assert rig.bus.stats.get("done", 0) == 0
    assert rig.bus.complete("thief", thief, 5) is Outcome.DONE
    assert rig.bus.stats["done"] == 1 and rig.bus.stats["rows"] == 5


def test_lost_lease_abandons_the_job_between_chunks(rig: Rig) -> None:
    rig.bus.lease_ms = 100
    rig.enqueue(rig.files(1, rows=40))
    frozen = Frozen(rig.bus)
    slow = HashEmbedder(MODEL, seconds_per_row=0.01)
    w = rig.worker(rig.pipeline(embedder=slow, chunk_rows=4), transport=frozen, lease_ms=100, burst=False)
    th, _ = run_in_thread(w)
    wait_for(lambda: len(slow.calls) >= 1)
    frozen.frozen.set()
    time.sleep(0.15)
    assert rig.bus.claim("thief", ["default"], 0) is not None
    frozen.frozen.clear()
    wait_for(lambda: bool(events(rig.bus, "lease_lost")))
    w.stop.set()
    th.join(JOIN_S)
    assert len(slow.calls) < 10  # stopped early, not after all 10 chunks
    assert rig.outputs() == [] and rig.bus.stats.get("done", 0) == 0
    assert not list(rig.roots.output_root.rglob(".*.tmp"))


def test_prefetched_job_keeps_its_lease_while_the_current_one_runs(rig: Rig) -> None:
    rig.bus.lease_ms = 400
    jobs = rig.enqueue(rig.files(2))
    gate = Gate(rig.pipeline(), lambda j: j.id == jobs[0].id)
    w = rig.worker(gate, lease_ms=400)
    th, _ = run_in_thread(w)
    assert gate.entered.wait(JOIN_S)
    wait_for(lambda: w._next is not None)
    time.sleep(1.3)  # three leases long
    assert rig.bus.claim("thief", ["default"], 0) is None  # both leases were renewed
    gate.release.set()
    th.join(JOIN_S)
    assert rig.bus.stats["done"] == 2 and rig.bus.stats.get("lost_lease", 0) == 0


# -- controls, lanes, burst ------------------------------------------------------
def test_pause_resume_and_drain(rig: Rig) -> None:
    rig.enqueue(rig.files(3))
    rig.bus.control.paused = True
    w = rig.worker(burst=False, heartbeat_s=0.02, worker_id="p1", prefetch=False)
    th, _ = run_in_thread(w)
    wait_for(lambda: rig.bus.workers.get("p1", {}).get("state") == "paused")
    assert rig.bus.stats.get("done", 0) == 0
    rig.bus.control.paused = False
    wait_for(lambda: rig.bus.stats.get("done", 0) >= 1)
    rig.bus.control.drain = True
    th.join(JOIN_S)
    assert not th.is_alive()  # drained: exited without burst
    done = rig.bus.stats["done"]
    assert done >= 1 and memory_backlog(rig.bus)(["default"]) == 3 - done
    assert "p1" not in rig.bus.workers


def test_drain_finishes_the_current_job_and_leaves_the_rest_queued(rig: Rig) -> None:
    jobs = rig.enqueue(rig.files(3))
    gate = Gate(rig.pipeline(), lambda j: j.id == jobs[0].id)
    w = rig.worker(gate, burst=False)
    th, _ = run_in_thread(w)
    assert gate.entered.wait(JOIN_S)
    rig.bus.control.drain = True
    gate.release.set()
    th.join(JOIN_S)
    assert not th.is_alive()
    assert rig.bus.stats["done"] == 1
    assert memory_backlog(rig.bus)(["default"]) == 2  # the prefetched one was given back


def test_lanes_are_consumed_in_priority_order_and_others_are_left_alone(rig: Rig) -> None:
    default_jobs = rig.enqueue(rig.files(2, sub="small"))
    gpu_jobs = rig.enqueue(rig.files(2, sub="large"), lane="gpu")
    other = rig.enqueue(rig.files(1, sub="elsewhere"), lane="cpu-only")
    run(rig.worker(lanes=["gpu", "default"], prefetch=False))
    order = [e["job"] for e in events(rig.bus, "job_done")]
    assert order[:2] == [j.id for j in gpu_jobs] and sorted(order[2:]) == sorted(j.id for j in default_jobs)
    assert other[0].id not in order and memory_backlog(rig.bus)(["cpu-only"]) == 1


def test_burst_waits_for_retries_still_delayed(rig: Rig) -> None:
    rig.enqueue(rig.files(1))
    run(rig.worker(handler=rig.pipeline(embedder=Flaky(1)), retry_base_ms=300))
    assert rig.bus.stats["done"] == 1


# -- watchdog and signals ------------------------------------------------------
def test_watchdog_abandons_a_job_past_its_timeout_and_exits(rig: Rig) -> None:
    job = rig.enqueue(rig.files(1))[0]
    gate = Gate(rig.pipeline(), lambda j: True)
    w = rig.worker(gate, job_timeout_s=0.2, burst=False)
    w.watchdog.poll_s = 0.02
    th, _ = run_in_thread(w)
    wait_for(lambda: rig.exits == [EXIT_JOB_TIMEOUT])
    assert rig.bus.errors[job.id].startswith(f"{job.path}: job ran past --job-timeout")
    assert rig.bus.stats["retried"] == 1
    gate.release.set()  # (in a real worker the process is gone by now)
    w.stop.set()
    th.join(JOIN_S)
    assert rig.bus.stats.get("done", 0) == 0  # the abandoned run cannot count


def test_first_signal_stops_after_the_job_second_exits_at_once() -> None:
    stop = threading.Event()
    exits: list[int] = []
    s = StopSignals(stop, exits.append)
    s.handle(15)
    assert stop.is_set() and exits == []
    s.handle(2)
    assert exits == [130]


def test_stop_request_finishes_the_current_job_and_releases_the_prefetched_one(rig: Rig) -> None:
    jobs = rig.enqueue(rig.files(3))
    gate = Gate(rig.pipeline(), lambda j: j.id == jobs[0].id)
    w = rig.worker(gate, burst=False)
    th, codes = run_in_thread(w)
    assert gate.entered.wait(JOIN_S)
    wait_for(lambda: w._next is not None)
    w.signals.handle(15)
    gate.release.set()
    th.join(JOIN_S)
    assert codes == [0] and rig.bus.stats["done"] == 1
    assert memory_backlog(rig.bus)(["default"]) == 2


# -- Redis away ----------------------------------------------------------------
class Outage:
    """Wraps a transport; every call raises ``BusUnavailable`` until ``until``."""

    def __init__(self, inner: MemoryTransport, seconds: float) -> None:
        self.inner = inner
        self.until = time.monotonic() + seconds
        self.refused: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)

        def call(*a: Any, **kw: Any) -> Any:
            if time.monotonic() < self.until:
                self.refused[name] = self.refused.get(name, 0) + 1
                raise BusUnavailable("Redis unavailable: ConnectionError")
            return target(*a, **kw)

        return call


def test_worker_waits_out_a_redis_outage_with_backoff(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "RECONNECT_FIRST_S", 0.02)
    rig.enqueue(rig.files(2))
    outage = Outage(rig.bus, 0.6)
    assert run(rig.worker(transport=outage)) == 0
    assert rig.bus.stats["done"] == 2
    assert 0 < sum(outage.refused.values()) <= 20  # backoff, not a busy loop


def test_completion_is_retried_until_redis_is_back(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "RECONNECT_FIRST_S", 0.02)
    rig.enqueue(rig.files(1))

    class CompleteOutage(Outage):
        def __getattr__(self, name: str) -> Any:
            return Outage.__getattr__(self, name) if name == "complete" else getattr(self.inner, name)

    outage = CompleteOutage(rig.bus, 0.0)
    gate = Gate(rig.pipeline(), lambda j: True)
    th, _ = run_in_thread(rig.worker(gate, transport=outage))
    assert gate.entered.wait(JOIN_S)
    outage.until = time.monotonic() + 0.3
    gate.release.set()
    th.join(JOIN_S)
    assert outage.refused["complete"] >= 1 and rig.bus.stats["done"] == 1
