"""The shell scripts and Redis configuration in ``deploy/``, run for real
outside any container: the secret loader, the Redis entry point with
``redis.conf`` against a real redis-server, and the secrets generator."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.procs import free_port

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "deploy" / "docker"
OWN_SCRIPTS = sorted(p for p in (ROOT / "deploy").rglob("*.sh") if p.name not in ("setup.sh", "dist-worker.sh"))


def assert_stopped(port: int) -> None:
    """The entry point execs redis-server: stopping the process stops the
    server itself, and no orphan keeps the port."""
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, f"a redis-server still listens on {port}"


@pytest.mark.parametrize("script", OWN_SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_script_parses_and_is_executable(script: Path) -> None:
    shell = "sh" if script.read_text().startswith("#!/bin/sh") else "bash"
    proc = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    assert script.stat().st_mode & stat.S_IXUSR, f"{script.name} is not executable"


def run_entrypoint(env: dict[str, str], *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(DOCKER / "entrypoint.sh"), *cmd],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_entrypoint_turns_secret_files_into_variables(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret with space\n")
    (tmp_path / "tok").write_text("t0ken")
    env = {
        "EMBEDFLEET_REDIS_PASSWORD_FILE": str(tmp_path / "pw"),
        "EMBEDFLEET_DASHBOARD_TOKEN_FILE": str(tmp_path / "tok"),
    }
    proc = run_entrypoint(env, "env")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "EMBEDFLEET_REDIS_PASSWORD=s3cret with space" in lines
    assert "EMBEDFLEET_DASHBOARD_TOKEN=t0ken" in lines
    assert not any(line.startswith("EMBEDFLEET_REDIS_PASSWORD_FILE=") for line in lines)


def test_entrypoint_refuses_an_unreadable_secret_without_printing_it(tmp_path: Path) -> None:
    proc = run_entrypoint({"EMBEDFLEET_REDIS_PASSWORD_FILE": str(tmp_path / "missing")}, "true")
    assert proc.returncode == 64
    assert "cannot read EMBEDFLEET_REDIS_PASSWORD_FILE" in proc.stderr


def test_entrypoint_without_secrets_runs_the_command_as_is() -> None:
    proc = run_entrypoint({}, "sh", "-c", "echo ran; exit 7")
    assert proc.returncode == 7 and proc.stdout == "ran\n"


# -- redis.conf + redis-entrypoint.sh ------------------------------------------


@pytest.fixture
def bus_redis(tmp_path: Path) -> Iterator[tuple[redis.Redis, str, Path, subprocess.Popen[bytes]]]:
    """redis-server started through the image's entry point and redis.conf."""
    password = 'pa ss"word\\with-quotes'
    (tmp_path / "pw").write_text(password + "\n")
    port = free_port()
    log = tmp_path / "redis.log"
    proc = subprocess.Popen(
        ["sh", str(DOCKER / "redis-entrypoint.sh"), "--port", str(port), "--bind", "127.0.0.1"],
        env={
            "PATH": os.environ["PATH"],
            "EMBEDFLEET_REDIS_CONF": str(DOCKER / "redis.conf"),
            "EMBEDFLEET_REDIS_PASSWORD_FILE": str(tmp_path / "pw"),
        },
        cwd=tmp_path,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    client = redis.Redis(port=port, password=password, socket_timeout=5)
    deadline = time.monotonic() + 15
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"redis-entrypoint.sh did not start redis-server: {log.read_text()}")
            time.sleep(0.05)
    try:
        yield client, password, log, proc
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        assert_stopped(port)


def test_redis_runs_with_aof_everysec_and_noeviction(bus_redis: tuple[redis.Redis, str, Path, object]) -> None:
    client = bus_redis[0]
    cfg = client.config_get("*")
    assert cfg["appendonly"] == "yes"
    assert cfg["appendfsync"] == "everysec"
    assert cfg["maxmemory-policy"] == "noeviction"
    assert cfg["save"] == ""


def test_redis_requires_the_password_and_never_logs_it(
    bus_redis: tuple[redis.Redis, str, Path, subprocess.Popen[bytes]],
) -> None:
    client, password, log, proc = bus_redis
    port = client.connection_pool.connection_kwargs["port"]
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port, socket_timeout=5).set("k", "v")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port, password="wrong", socket_timeout=5).ping()
    client.set("k", "v")
    proc.terminate()
    proc.wait(timeout=15)
    text = log.read_text()
    assert "Ready to accept connections" in text
    assert password not in text and "pa ss" not in text
    # Nor on the command line, where `ps` would show it.
    assert all(password not in str(a) for a in list(proc.args))  # type: ignore[arg-type]


def test_redis_keeps_data_across_a_restart_through_the_aof(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("pw")
    env = {
        "PATH": os.environ["PATH"],
        "EMBEDFLEET_REDIS_CONF": str(DOCKER / "redis.conf"),
        "EMBEDFLEET_REDIS_PASSWORD_FILE": str(tmp_path / "pw"),
    }
    port = free_port()
    args = [
        "sh",
        str(DOCKER / "redis-entrypoint.sh"),
        "--port",
        str(port),
        "--dir",
        str(tmp_path),
        "--bind",
        "127.0.0.1",
    ]
    for attempt in range(2):
        proc = subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=port, password="pw", socket_timeout=5)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                break
            except (redis.ConnectionError, redis.BusyLoadingError):
                assert time.monotonic() < deadline and proc.poll() is None, "redis-server did not start"
                time.sleep(0.05)
        if attempt == 0:
            client.xadd("embedfleet:q:default", {"job": "{}"})
            time.sleep(1.2)  # one everysec fsync
            proc.kill()  # a crash, not a clean shutdown
            proc.wait(timeout=15)
            assert_stopped(port)
        else:
            assert client.xlen("embedfleet:q:default") == 1
            proc.terminate()
            proc.wait(timeout=15)
        assert_stopped(port)
    assert (tmp_path / "appendonlydir").is_dir()


def test_redis_entrypoint_refuses_to_run_without_auth(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["sh", str(DOCKER / "redis-entrypoint.sh"), "--port", str(free_port())],
        env={"PATH": os.environ["PATH"], "EMBEDFLEET_REDIS_CONF": str(DOCKER / "redis.conf")},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 64
    assert "no unauthenticated bus" in proc.stderr


# -- make-secrets.sh -------------------------------------------------------------


def test_make_secrets_writes_random_secrets_once(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    env = {"PATH": os.environ["PATH"], "EMBEDFLEET_SECRETS_DIR": str(secrets)}
    script = DOCKER / "make-secrets.sh"
    subprocess.run(["bash", str(script)], env=env, check=True, timeout=30, capture_output=True)
    first = {p.name: p.read_text() for p in secrets.iterdir()}
    assert set(first) == {"redis_password", "dashboard_token"}
    for value in first.values():
        assert len(value) == 64 and int(value, 16) >= 0
    assert first["redis_password"] != first["dashboard_token"]
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in secrets.iterdir())
    subprocess.run(["bash", str(script)], env=env, check=True, timeout=30, capture_output=True)
    assert {p.name: p.read_text() for p in secrets.iterdir()} == first
