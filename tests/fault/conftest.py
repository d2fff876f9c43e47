"""Fixtures of the fault harness: corpus, private Redis, runs, references.

Every process a test starts belongs to a ``ProcessGroup`` closed at teardown;
every Redis is a private one on a free port with AOF on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.fault.dataset import Corpus, jobs_for, make_corpus
from tests.fault.harness import Fleet, Run
from tests.fault.kinds import RunConfig, WorkerKind
from tests.fault.procs import ProcessGroup
from tests.fault.redis_server import RedisServer

RunFactory = Callable[..., Run]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return make_corpus(tmp_path_factory.mktemp("fault-corpus"))


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[ProcessGroup]:
    group = ProcessGroup(tmp_path / "logs")
    try:
        yield group
    finally:
        group.close()


@pytest.fixture
def server(tmp_path: Path, procs: ProcessGroup) -> RedisServer:
    srv = RedisServer(tmp_path / "redis", free_port(), procs)
    srv.start()
    return srv


def new_run(server: RedisServer, procs: ProcessGroup, kind: WorkerKind, corpus: Corpus, out: Path,
            lease_ms: int = 2000, max_deliveries: int = 5) -> Run:  # fmt: skip
    cfg = RunConfig(server.url, "efault", corpus.root, out, lease_ms=lease_ms, max_deliveries=max_deliveries)
    return Run(server, procs, kind, cfg)


@pytest.fixture
def make_run(server: RedisServer, procs: ProcessGroup, corpus: Corpus, tmp_path: Path) -> RunFactory:
    def factory(kind: WorkerKind, **kw: int) -> Run:
        return new_run(server, procs, kind, corpus, tmp_path / f"out-{kind.label}", **kw)

    return factory


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


@pytest.fixture(scope="session")
def references(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> References:
    return References(corpus, tmp_path_factory.mktemp("fault-reference"))
