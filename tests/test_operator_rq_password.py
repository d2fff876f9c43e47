"""Remote clustering's RQ worker, as the docs start it, against a Redis with
a password given only through the environment: it runs a job, and the
password appears in no ``ps`` line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from tests.support.redis_server import REDIS_PASSWORD as SECRET

ROOT = Path(__file__).resolve().parent.parent
COMMAND = "rq worker -c deploy.rq_settings -S json embedfleet-cluster"
RQ = Path(sys.executable).parent / "rq"


def test_the_documented_command_is_the_one_tested() -> None:
    for doc in ("docs/operations.md", "README.md"):
        assert COMMAND in (ROOT / doc).read_text(), doc


def test_an_rq_worker_with_the_password_in_the_environment_runs_a_job(password_redis: int) -> None:
    url = f"redis://127.0.0.1:{password_redis}/0"
    client = redis.Redis.from_url(url, password=SECRET)
    job = Queue("eftest-cluster", connection=client, serializer=JSONSerializer).enqueue("operator.add", 2, 3)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMBEDFLEET_", "RQ_"))}
    env |= {"EMBEDFLEET_REDIS_URL": url, "EMBEDFLEET_REDIS_PASSWORD": SECRET}
    argv = [str(RQ), *COMMAND.split()[1:-1], "--burst", "eftest-cluster"]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        seen += subprocess.run(["ps", "-eww", "-o", "args="], capture_output=True, text=True).stdout.splitlines()
        time.sleep(0.1)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert any("deploy.rq_settings" in line for line in seen), "the worker was never seen in ps"
    assert not [line for line in seen if SECRET in line]
    assert SECRET not in out
    job.refresh()
    assert job.return_value() == 5


def test_without_the_password_the_worker_says_so(password_redis: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMBEDFLEET_", "RQ_"))}
    env["EMBEDFLEET_REDIS_URL"] = f"redis://127.0.0.1:{password_redis}/0"
    proc = subprocess.run(
        [str(RQ), *COMMAND.split()[1:-1], "--burst", "eftest-cluster"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "authenticated" in proc.stdout + proc.stderr  # redis-py's "HELLO must be called with the client ..."
