"""``deploy/redis/make-acl.sh``: one Redis ACL user per role.

A real redis-server is started through the image's entry point with the
generated ACL file; the real manager (scan, serve, actions, status) and the
real Python worker then run a whole job, dead letters included, each logged
in as its own role, and Redis's ACL log must stay empty. What a role must
not do is refused.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from tests.support.procs import free_port

ROOT = Path(__file__).resolve().parents[1]
MAKE_ACL = ROOT / "deploy" / "redis" / "make-acl.sh"
ENTRYPOINT = ROOT / "deploy" / "docker" / "redis-entrypoint.sh"
NS = "aclns"
ROLES = ("manager", "worker", "admin")


def assert_stopped(port: int) -> None:
    """The entry point execs redis-server: stopping the process stops the
    server itself, and no orphan keeps the port."""
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, f"a redis-server still listens on {port}"


@dataclass
class AclRedis:
    port: int
    passwords: dict[str, str]

    def url(self, role: str) -> str:
        return f"redis://{role}:{self.passwords[role]}@127.0.0.1:{self.port}/0"

    def client(self, role: str) -> redis.Redis:
        return redis.Redis(port=self.port, username=role, password=self.passwords[role], socket_timeout=10)


@pytest.fixture
def acl_redis(tmp_path: Path) -> Iterator[AclRedis]:
    secrets = tmp_path / "secrets"
    subprocess.run(
        ["bash", str(MAKE_ACL), "--namespace", NS, "--secrets", str(secrets)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    acl = (secrets / "users.acl").read_text()
    passwords = {r: (secrets / f"redis_{r}_password").read_text() for r in ROLES}
    assert all(pw not in acl for pw in passwords.values()), "the ACL file must hold only hashes"
    port = free_port()
    proc = subprocess.Popen(
        ["sh", str(ENTRYPOINT), "--port", str(port), "--bind", "127.0.0.1"],
        env={
            "PATH": os.environ["PATH"],
            "EMBEDFLEET_REDIS_CONF": str(ROOT / "deploy" / "docker" / "redis.conf"),
            "EMBEDFLEET_REDIS_ACLFILE": str(secrets / "users.acl"),
        },
        cwd=tmp_path,
        stdout=(tmp_path / "redis.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    r = AclRedis(port, passwords)
    admin = r.client("admin")
    deadline = time.monotonic() + 15
    while True:
        try:
            admin.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"redis-server did not start: {(tmp_path / 'redis.log').read_text()[-2000:]}")
            time.sleep(0.05)
    try:
        yield r
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        assert_stopped(port)


def run(args: list[str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "EMBEDFLEET_NAMESPACE": NS}
    env.pop("EMBEDFLEET_REDIS_URL", None)
    return subprocess.run(
        [sys.executable, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def make_corpus(root: Path) -> int:
    """A small corpus plus one input whose text column is not text (a
    permanent error: the worker dead-letters it). Returns the good files."""
    from corpus.generate import generate_corpus

    good = generate_corpus(root, suffixes=1, subreddits=2, files_per_subreddit=1, rows_per_file=30, seed=3)
    bad = root / "chains" / "2024-01" / "zz_bad"
    bad.mkdir(parents=True)
    pq.write_table(pa.table({"text": pa.array([1, 2, 3], pa.int64())}), bad / "part-00000.parquet")
    return len(good)


def acl_denials(r: AclRedis) -> list[Any]:
    entries = r.client("admin").acl_log()
    return [e for e in entries if e.get("username") in ("manager", "worker")]


def wait_for_enqueue(r: AclRedis, timeout_s: float = 60) -> None:
    admin = r.client("admin")
    deadline = time.monotonic() + timeout_s
    while int(admin.hget(f"{NS}:stats", "enqueued") or 0) == 0:
        assert time.monotonic() < deadline, "the manager enqueued nothing"
        time.sleep(0.1)


def test_each_role_runs_its_part_of_a_run_with_nothing_denied(acl_redis: AclRedis, tmp_path: Path) -> None:
    r = acl_redis
    data = tmp_path / "data"
    n_good = make_corpus(data)
    serve = subprocess.Popen(
        [sys.executable, "-m", "manager", "serve", "--input", str(data), "--output", str(data),
         "--redis-url", r.url("manager"), "--no-api", "--no-advertise"],
        env={**os.environ, "HF_HUB_OFFLINE": "1", "EMBEDFLEET_NAMESPACE": NS},
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_for_enqueue(r)
        worker = run(["-m", "workers.mps", "--redis-url", r.url("worker"), "--data-root", str(data),
                      "--burst", "--embedder", "hash", "--max-deliveries", "2"])  # fmt: skip
        assert worker.returncode == 0, worker.stderr[-3000:]
        out, _ = serve.communicate(timeout=120)
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait(timeout=30)
    # The run ends with the bad file dead-lettered: a non-zero status, by design.
    assert serve.returncode == 1, out[-3000:]
    stats = r.client("admin").hgetall(f"{NS}:stats")
    assert int(stats[b"done"]) == n_good and int(stats[b"dead"]) == 1

    for action in ("pause", "resume", "drain", "resume", "requeue-failed"):
        proc = run(["-m", "manager", action, "--redis-url", r.url("manager")])
        assert proc.returncode == 0, f"{action}: {proc.stderr[-2000:]}"
    rescan = run(["-m", "manager", "scan", "--input", str(data), "--output", str(data),
                  "--redis-url", r.url("manager"), "--namespace", NS, "--reconcile"])  # fmt: skip
    assert rescan.returncode == 0, f"scan --reconcile: {rescan.stderr[-2000:]}"
    status = run(["-m", "manager", "status", "--redis-url", r.url("manager"), "--output", str(data), "--json"])
    assert status.returncode == 0, status.stderr[-2000:]
    assert acl_denials(r) == []


def test_worker_role_cannot_steer_the_fleet_or_touch_other_keys(acl_redis: AclRedis) -> None:
    w = acl_redis.client("worker")
    assert w.hgetall(f"{NS}:control") == {}  # it may read the controls ...
    for attempt in (
        lambda: w.hset(f"{NS}:control", "paused", "1"),  # ... not set them
        lambda: w.sadd(f"{NS}:lanes", "x"),
        lambda: w.set("other:key", "1"),
        lambda: w.flushall(),
        lambda: w.config_get("*"),
        lambda: w.keys("*"),
        lambda: w.acl_list(),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()


def test_manager_role_is_confined_to_its_namespace(acl_redis: AclRedis) -> None:
    m = acl_redis.client("manager")
    m.hset(f"{NS}:control", "paused", "1")
    for attempt in (
        lambda: m.set("other:key", "1"),
        lambda: m.flushall(),
        lambda: m.config_set("appendonly", "no"),
        lambda: m.acl_list(),
        lambda: m.shutdown(),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()


def test_there_is_no_anonymous_access(acl_redis: AclRedis) -> None:
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(port=acl_redis.port, socket_timeout=5).ping()
