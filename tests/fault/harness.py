"""One fault-injection run: a Redis, a corpus, jobs, workers, and the verdict.

``Run`` enqueues jobs, starts workers of one kind (directly or under a
``Fleet`` that restarts the ones a fault killed), waits with a deadline for
the bus to go quiet, and checks the result with the total-queue checker and
the output checks.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from bus import constants as c
from bus.keys import Keys
from bus.messages import Job
from bus.redis_transport import RedisTransport
from bus.settings import RedisSettings
from tests.fault.checker import BusSnapshot, QueueReport, check_queue, read_snapshot
from tests.fault.kinds import RunConfig, WorkerKind
from tests.fault.outputs import OutputReport, check_outputs
from tests.support.procs import Managed, ProcessGroup, wait_until
from tests.support.redis_server import RedisServer

FAULT_POINT = "EMBEDFLEET_FAULT_POINT"
FAULT_EVERY = "EMBEDFLEET_FAULT_EVERY"
FAULT_CRASH_PATH = "EMBEDFLEET_FAULT_CRASH_PATH"


@dataclass
class Verdict:
    queue: QueueReport
    outputs: OutputReport
    snapshot: BusSnapshot

    @property
    def ok(self) -> bool:
        return self.queue.ok and self.outputs.ok

    def summary(self) -> str:
        return f"queue: {self.queue.summary()}\noutputs: {self.outputs.summary()}"


@dataclass
class Run:
    server: RedisServer
    procs: ProcessGroup
    kind: WorkerKind
    cfg: RunConfig
    enqueued: list[Job] = field(default_factory=list)
    _n: int = 0

    def client(self) -> redis.Redis:
        return self.server.client()

    def transport(self) -> RedisTransport:
        return RedisTransport(self.client(), namespace=self.cfg.namespace, lease_ms=self.cfg.lease_ms)

    @property
    def keys(self) -> Keys:
        return Keys(self.cfg.namespace)

    @property
    def settings(self) -> RedisSettings:
        return RedisSettings.from_url(self.server.url, namespace=self.cfg.namespace)

    def enqueue(self, jobs: Sequence[Job]) -> int:
        """Enqueue as the manager does (``manager.scan.enqueue``); log every job handed over."""
        from manager import scan

        new = scan.enqueue(self.settings, jobs).new
        self.enqueued.extend(jobs)
        return new

    def reconcile(self) -> int:
        """The manager's reconcile pass over every job this run enqueued."""
        from manager import scan

        return int(scan.reconcile(self.settings, list(self.enqueued)))

    def worker_id(self, tag: str = "w") -> str:
        self._n += 1
        return f"{self.kind.name}-{tag}{self._n}"

    def owned_by(self, consumer: str, lane: str = c.DEFAULT_LANE) -> list[str]:
        """Entry ids of ``lane`` pending in ``consumer``'s name."""
        client = self.client()
        try:
            rows: Any = client.xpending_range(self.keys.queue(lane), c.GROUP, "-", "+", 100, consumername=consumer)
            return [r["message_id"].decode() for r in rows]
        finally:
            client.close()

    def job_of_entry(self, entry_id: str, lane: str = c.DEFAULT_LANE) -> Job:
        client = self.client()
        try:
            found: Any = client.xrange(self.keys.queue(lane), entry_id, entry_id, count=1)
            return Job.from_json(found[0][1][c.JOB_FIELD.encode()])
        finally:
            client.close()

    def done_count(self) -> int:
        """How many enqueued jobs are done (one round trip; 0 while Redis is away)."""
        if not self.enqueued:
            return 0
        client = self.client()
        try:
            states: Any = client.hmget(self.keys.state, [j.id for j in self.enqueued])
            return sum(1 for s in states if s == c.STATE_DONE.encode())
        except redis.exceptions.RedisError:
            return 0
        finally:
            client.close()

    def state_of(self, job_id: str) -> str | None:
        client = self.client()
        try:
            v: Any = client.hget(self.keys.state, job_id)
            return v.decode() if v is not None else None
        finally:
            client.close()

    def start_worker(
        self, tag: str = "w", env: Mapping[str, str] | None = None, prefix: Sequence[str] = (), url: str | None = None
    ) -> Managed:
        wid = self.worker_id(tag)
        cfg = self.cfg if url is None else RunConfig(**{**self.cfg.__dict__, "redis_url": url})
        return self.procs.start(wid, self.kind.argv(cfg, wid), env={**self.kind.env(), **(env or {})}, prefix=prefix)

    def quiet(self) -> bool:
        """Every enqueued job terminal, nothing pending, nothing delayed."""
        try:
            snap = self.snapshot()
        except redis.exceptions.RedisError:
            return False
        terminal = {c.STATE_DONE, c.STATE_DEAD}
        return snap.pending == 0 and snap.delayed == 0 and all(snap.state.get(j.id) in terminal for j in self.enqueued)

    def snapshot(self) -> BusSnapshot:
        client = self.client()
        try:
            return read_snapshot(client, self.cfg.namespace, sorted({j.lane for j in self.enqueued} or {"default"}))
        finally:
            client.close()

    def verdict(self, reference: Path, expected_dead: Sequence[str] = ()) -> Verdict:
        snap = self.snapshot()
        dead = set(expected_dead)
        queue = check_queue([j.id for j in self.enqueued], snap, dead)
        outs = {j.out for j in self.enqueued if j.id not in dead}
        outputs = check_outputs(self.cfg.output_root, outs, reference, self.kind.tolerance)
        return Verdict(queue, outputs, snap)


@dataclass
class FleetResult:
    restarts: int
    finished: bool
    seconds: float
    killed_at: Counter[str] = field(default_factory=Counter)
    """Members that died by a signal, by the fault point they were given."""
    respawned: int = 0
    """Members started again after all had exited 0 with work left (``respawn_idle``)."""


@dataclass
class Fleet:
    """Keeps ``size`` workers running, restarting those a fault killed."""

    run: Run
    size: int
    env_for: Callable[[int], Mapping[str, str]] = lambda _i: {}
    max_restarts: int = 400
    respawn_idle: bool = False
    """Start the fleet again when every member exited 0 (burst: nothing to do)
    but the run is not done, as a supervisor would when work reappears (a
    Redis that lost its tail, then a reconcile, brings work back)."""
    members: list[tuple[Managed, Mapping[str, str]]] = field(default_factory=list)

    starts: int = 0

    def _start(self, i: int) -> tuple[Managed, Mapping[str, str]]:
        """Start member ``i``; ``env_for`` gets how many members were started before."""
        env = self.env_for(self.starts)
        self.starts += 1
        return self.run.start_worker(f"s{i}-", env), env

    def start(self) -> None:
        self.members = [self._start(i) for i in range(self.size)]

    def supervise(self, timeout_s: float, until: Callable[[], bool] | None = None) -> FleetResult:
        """Restart killed members until every member exited 0 (burst done) and ``until`` holds."""
        t0 = time.monotonic()
        res = FleetResult(0, False, 0.0)
        done = until or self.run.quiet
        while time.monotonic() - t0 < timeout_s:
            for i, (m, env) in enumerate(self.members):
                rc = m.returncode()
                if rc is not None and rc != 0 and res.restarts < self.max_restarts:
                    if rc < 0:
                        res.killed_at[env.get(FAULT_POINT, "signal")] += 1
                    res.restarts += 1
                    self.members[i] = self._start(i)
            if all(m.returncode() == 0 for m, _ in self.members):
                if done():
                    res.finished = True
                    break
                if self.respawn_idle and res.respawned < self.size * 3:
                    res.respawned += self.size
                    self.members = [self._start(i) for i in range(self.size)]
            time.sleep(0.05)
        res.seconds = time.monotonic() - t0
        return res


def run_to_quiet(run: Run, workers: list[Managed], timeout_s: float) -> bool:
    """Wait for the given workers to exit and the bus to go quiet."""
    return wait_until(lambda: all(not w.alive() for w in workers) and run.quiet(), timeout_s, every_s=0.1)


def stop_while_owning(run: Run, worker: Managed, timeout_s: float) -> tuple[str, Job]:
    """SIGSTOP ``worker`` at a moment it holds a job; return that entry and job."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not worker.alive():
            break
        if run.owned_by(worker.name):
            worker.stop()
            # A command the worker wrote just before it stopped (its completion,
            # say) may still be on its way to Redis: let it land, then look again.
            time.sleep(0.2)
            owned = run.owned_by(worker.name)
            if owned:
                return owned[0], run.job_of_entry(owned[0])
            worker.cont()
        time.sleep(0.01)
    raise AssertionError(f"{worker.name} never held a job to stop it on:\n{worker.log_tail()}")
