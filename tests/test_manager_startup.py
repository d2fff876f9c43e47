"""Start-up errors of ``python -m manager``: one line naming what failed and
where (password masked), no traceback, the documented exit status, and
nothing created on disk when the input is wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bus.errors import BusUnavailable
from bus.settings import RedisSettings
from manager import startup
from tests.support import ROOT
from tests.support.procs import free_port
from tests.support.redis_server import REDIS_PASSWORD

SECRET = REDIS_PASSWORD


def manager(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDFLEET_")}
    return subprocess.run(
        [sys.executable, "-m", "manager", *args],
        cwd=ROOT,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    (tmp_path / "data" / "chains").mkdir(parents=True)
    return tmp_path / "data"


def test_redis_down_retries_with_backoff_then_exits_75_naming_it_without_the_password(data: Path) -> None:
    port = free_port()  # nothing listens there
    proc = manager(
        "serve", "--redis-url", f"redis://:{SECRET}@127.0.0.1:{port}/0", "--input", str(data),
        "--model", "m@0", "--redis-wait", "1.5", "--no-advertise", "--no-api",
    )  # fmt: skip
    line = one_error_line(proc)
    assert proc.returncode == startup.EXIT_REDIS_UNREACHABLE == 75
    assert f"cannot reach Redis at redis://:***@127.0.0.1:{port}/0" in line and "--redis-wait" in line
    assert "trying again in 0.25 s" in proc.stderr and "trying again in 0.50 s" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert not (data / "runs").exists()


def test_a_wrong_url_scheme_is_one_line_and_exit_2(data: Path) -> None:
    for args in (
        ("serve", "--redis-url", f"http://:{SECRET}@host:6379/0", "--input", str(data)),
        ("pause", "--redis-url", "http://host:6379/0"),
        ("run", "--data", str(data), "--redis-url", "http://host:6379/0", "--port", "0"),
    ):
        proc = manager(*args)
        line = one_error_line(proc)
        assert proc.returncode == 2 and "unsupported Redis URL scheme 'http'" in line, args
        assert SECRET not in proc.stderr
    assert not (data / "runs").exists() and not (data / ".embedfleet").exists()


def test_no_url_at_all_is_exit_2_not_1(data: Path) -> None:
    proc = manager("serve", "--input", str(data))
    assert proc.returncode == 2 and "no Redis: pass --redis-url" in one_error_line(proc)


def test_a_missing_input_fails_before_creating_any_directory(tmp_path: Path, redis_url: str) -> None:
    missing = tmp_path / "nonexistent"
    proc = manager("serve", "--redis-url", redis_url, "--input", str(missing), "--no-advertise", "--no-api")
    assert proc.returncode == 2 and f"--input {missing}: no such directory" in one_error_line(proc)
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = manager("serve", "--redis-url", redis_url, "--input", str(empty), "--no-advertise", "--no-api")
    assert proc.returncode == 2 and "no chains/ directory" in one_error_line(proc)
    assert list(empty.iterdir()) == []


def test_a_missing_password_is_exit_77_and_says_how_to_give_one(data: Path, password_redis: int) -> None:
    """redis-py 8 speaks RESP3: without a password Redis answers HELLO with
    "HELLO must be called with the client already authenticated"."""
    url = f"redis://127.0.0.1:{password_redis}/0"
    proc = manager("serve", "--redis-url", url, "--input", str(data), "--no-advertise", "--no-api")
    line = one_error_line(proc)
    assert proc.returncode == startup.EXIT_ACCESS_DENIED == 77
    assert f"Redis at {url} refused the login" in line and "EMBEDFLEET_REDIS_PASSWORD" in line
    wrong = manager(
        "serve", "--redis-url", url, "--input", str(data), "--no-advertise", "--no-api",
        env={"EMBEDFLEET_REDIS_PASSWORD": "not-" + SECRET},
    )  # fmt: skip
    assert wrong.returncode == 77 and "redis://:***@" in one_error_line(wrong) and SECRET not in wrong.stderr
    assert not (data / "runs").exists()


def test_operator_commands_with_redis_down_exit_75(data: Path) -> None:
    proc = manager("drain", "--redis-url", f"redis://:{SECRET}@127.0.0.1:{free_port()}/0")
    line = one_error_line(proc)
    assert proc.returncode == 75 and "redis://:***@127.0.0.1" in line and SECRET not in proc.stderr


def test_the_wait_backs_off_from_a_quarter_second_to_ten_and_gives_up() -> None:
    slept: list[float] = []

    def down(_: RedisSettings) -> None:
        raise BusUnavailable("Redis unavailable: ConnectionError")

    def sleep(s: float) -> None:
        slept.append(s)
        clock[0] += s

    clock = [0.0]
    with pytest.raises(startup.StartupError) as e:
        startup.wait_for_redis(RedisSettings(), 30.0, ping=down, sleep=sleep, clock=lambda: clock[0])
    assert e.value.code == 75
    assert slept[:7] == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0] and sum(slept) == pytest.approx(30.0)


def test_the_wait_returns_as_soon_as_redis_answers() -> None:
    calls: list[int] = []

    def flaky(_: RedisSettings) -> None:
        calls.append(1)
        if len(calls) < 3:
            raise BusUnavailable("Redis unavailable: ConnectionError")

    startup.wait_for_redis(RedisSettings(), 30.0, ping=flaky, sleep=lambda s: None)
    assert len(calls) == 3
