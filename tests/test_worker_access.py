"""The Python worker against a redis-server that refuses it: a wrong
password (WRONGPASS), none (NOAUTH), an ACL user without the keys it needs
(NOPERM). Each is permanent: the worker exits ``EXIT_ACCESS_DENIED`` within
seconds with one line naming what failed and where, and the password appears
nowhere. The Rust suite checks its worker the same way
(``rust/worker/tests/it/access.rs``)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bus.errors import BusAccessDenied
from bus.memory import MemoryTransport
from bus.transport import Delivery
from tests.support import ROOT
from tests.support.procs import free_port
from tests.support.redis_server import start_redis
from workers.runtime import Worker, WorkerConfig
from workers.supervision import EXIT_ACCESS_DENIED

PASSWORD = "right-Pa55word-4-bus"
WRONG = "wr0ng-Pa55word-never-shown"
LIMITED = "limited-Pa55word-never-shown"
EXIT_WITHIN_S = 60  # before: retried every 10 s, forever


@pytest.fixture(scope="module")
def locked_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A redis-server with a password and a user that may touch no bus key."""
    port = free_port()
    proc = start_redis(tmp_path_factory.mktemp("locked-redis"), port)  # pings before the password is set
    try:
        admin = redis.Redis(port=port)
        admin.execute_command("ACL", "SETUSER", "limited", "on", f">{LIMITED}", "~other:*", "+@all")
        admin.config_set("requirepass", PASSWORD)
        yield port
    finally:
        proc.kill()
        proc.wait(10)


CASES = {
    "wrong password": ("redis://:{pw}@127.0.0.1:{port}/0", WRONG, None, "authentication failed"),
    "wrong password from the environment": ("redis://127.0.0.1:{port}/0", None, WRONG, "authentication failed"),
    "no password": ("redis://127.0.0.1:{port}/0", None, None, "authentication required"),
    "user without the bus keys": ("redis://limited:{pw}@127.0.0.1:{port}/0", LIMITED, None, "permission denied"),
}


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_refused_worker_exits_at_once_with_one_line_and_no_password(
    case: str, locked_port: int, tmp_path: Path
) -> None:
    url, url_pw, env_pw, what = CASES[case]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDFLEET_")}
    if env_pw:
        env["EMBEDFLEET_REDIS_PASSWORD"] = env_pw
    cmd = [
        sys.executable,
        "-m",
        "workers.mps",
        "--redis-url",
        url.format(pw=url_pw, port=locked_port),
        "--data-root",
        str(tmp_path),
        "--embedder",
        "hash",
        "--namespace",
        "eftest-access",
    ]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=EXIT_WITHIN_S)
    out = done.stdout + done.stderr
    assert done.returncode == EXIT_ACCESS_DENIED, out
    for secret in (WRONG, LIMITED, PASSWORD):
        assert secret not in out
    problems = [line for line in done.stderr.splitlines() if " INFO " not in line]
    assert len(problems) == 1, out
    user = "limited" if "limited" in url else ""
    masked = f"{user}:***@" if url_pw or env_pw else ""
    assert f"Redis at redis://{masked}127.0.0.1:{locked_port}/0 refused access: {what}" in problems[0]


def test_a_refusal_later_in_the_run_stops_the_worker_with_the_same_status() -> None:
    """An ACL changed under a running worker: no retry loop either; the
    worker shuts down (threads stopped, deregistered) and exits 77."""

    class Revoked(MemoryTransport):
        def claim(self, consumer: str, lanes: list[str], block_ms: int) -> Delivery | None:
            raise BusAccessDenied("Redis at redis://h:1/0 refused access: permission denied (NOPERM)")

    bus = Revoked()
    cfg = WorkerConfig(worker_id="w-revoked", handle_signals=False, block_ms=20, controls_every_s=0.02)
    w = Worker(bus, handler=object(), config=cfg)  # type: ignore[arg-type]
    assert w.run() == EXIT_ACCESS_DENIED
    assert w.reconnect_waits == 0
    assert [e["type"] for e in bus.events] == ["worker_started", "worker_stopped"]
    assert "w-revoked" not in bus.workers
