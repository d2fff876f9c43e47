"""Shared fixtures: a real redis-server for every bus test, one that wants a
password, and the release Rust worker binary. Helpers live in
``tests/support/``; test modules never import from here.

``EMBEDFLEET_TEST_REDIS_URL`` points at a server started by ``.ci/run``; with
none set, a private redis-server is started for the session on a free port.
Each test gets a flushed database.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from bus.redis_transport import RedisTransport  # noqa: E402
from bus.settings import RedisSettings  # noqa: E402
from tests.support.procs import free_port  # noqa: E402
from tests.support.redis_server import REDIS_PASSWORD, start_redis  # noqa: E402
from tests.support.rust_worker import require_worker  # noqa: E402


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("EMBEDFLEET_TEST_REDIS_URL")
    if url:
        yield url
        return
    port = free_port()
    proc = start_redis(tmp_path_factory.mktemp("redis"), port)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def settings(redis_url: str) -> RedisSettings:
    return RedisSettings.from_url(redis_url, namespace="eftest")


@pytest.fixture
def transport(redis_client: redis.Redis) -> RedisTransport:
    return RedisTransport(redis_client, namespace="eftest")


@pytest.fixture
def password_redis(tmp_path: Path) -> Iterator[int]:
    """The port of a redis-server that wants ``REDIS_PASSWORD``."""
    proc = start_redis(tmp_path / "redis-pw", port := free_port(), password=REDIS_PASSWORD)
    yield port
    proc.kill()
    proc.wait(10)


@pytest.fixture(scope="session")
def worker_bin() -> Path:
    """The release Rust worker and its ONNX export, or a failure saying how to make them."""
    return require_worker()
