"""Runs of the fault harness over a private Redis, and the fault-free
reference runs that scenarios compare their outputs with."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.fault.dataset import Corpus, jobs_for
from tests.fault.harness import Fleet, Run
from tests.fault.kinds import RunConfig, WorkerKind
from tests.support.procs import ProcessGroup, free_port
from tests.support.redis_server import RedisServer

RunFactory = Callable[..., Run]
"""The ``make_run`` fixture: ``make_run(kind, lease_ms=..., max_deliveries=...)``."""


def new_run(server: RedisServer, procs: ProcessGroup, kind: WorkerKind, corpus: Corpus, out: Path,
            lease_ms: int = 2000, max_deliveries: int = 5) -> Run:  # fmt: skip
    cfg = RunConfig(server.url, "efault", corpus.root, out, lease_ms=lease_ms, max_deliveries=max_deliveries)
    return Run(server, procs, kind, cfg)


class References:
    """Fault-free runs over the whole corpus, one per worker kind, made once."""

    def __init__(self, corpus: Corpus, base: Path) -> None:
        self.corpus = corpus
        self.base = base
        self.done: dict[str, Path] = {}

    def get(self, kind: WorkerKind) -> Path:
        if kind.label not in self.done:
            self.done[kind.label] = self._make(kind)
        return self.done[kind.label]

    def _make(self, kind: WorkerKind) -> Path:
        work = self.base / kind.label
        procs = ProcessGroup(work / "logs")
        try:
            srv = RedisServer(work / "redis", free_port(), procs)
            srv.start()
            run = new_run(srv, procs, kind, self.corpus, work / "out")
            run.enqueue(jobs_for(self.corpus, self.corpus.files, kind.model_id()))
            fleet = Fleet(run, size=2)
            fleet.start()
            res = fleet.supervise(timeout_s=240)
            verdict = run.verdict(work / "out")
            if not (res.finished and res.restarts == 0 and verdict.queue.ok and not verdict.outputs.missing):
                raise AssertionError(f"fault-free reference run of {kind.label} failed: {res}\n"
                                     f"{verdict.summary()}\n{procs.logs()}")  # fmt: skip
            return work / "out"
        finally:
            procs.close()
