"""Fixtures of the fault harness: corpus, private Redis, runs, references
(what they build is in ``runs.py``, which scenarios import).

Every process a test starts belongs to a ``ProcessGroup`` closed at teardown;
every Redis is a private one on a free port with AOF on.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fault.dataset import Corpus, make_corpus
from tests.fault.harness import Run
from tests.fault.kinds import WorkerKind
from tests.fault.runs import References, RunFactory, new_run
from tests.support.procs import ProcessGroup, free_port
from tests.support.redis_server import RedisServer


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


@pytest.fixture
def make_run(server: RedisServer, procs: ProcessGroup, corpus: Corpus, tmp_path: Path) -> RunFactory:
    def factory(kind: WorkerKind, **kw: int) -> Run:
        return new_run(server, procs, kind, corpus, tmp_path / f"out-{kind.label}", **kw)

    return factory


@pytest.fixture(scope="session")
def references(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> References:
    return References(corpus, tmp_path_factory.mktemp("fault-reference"))
