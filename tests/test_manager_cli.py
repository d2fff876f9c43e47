"""``python -m manager serve`` end to end: scan a real corpus, enqueue, watch
fake workers finish, cluster by command, advertise the bus over mDNS, serve
the API, and exit with the run's status."""

from __future__ import annotations

import json
import shlex
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import redis

from bus.discovery import find_redis_url
from bus.settings import RedisSettings
from manager.__main__ import main as manager_main
from manager.journal import verify_run
from manager.state import latest_run_dir, read_state
from tests.support.fakes import FakeWorker
from tests.support.procs import free_port

MODEL = "all-MiniLM-L6-v2@0123456789abcdef"


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    from corpus.generate import generate_corpus

    data = tmp_path / "data"
    generate_corpus(data, suffixes=1, subreddits=2, files_per_subreddit=2, rows_per_file=10, seed=3)
    return data


def serve(settings: RedisSettings, data: Path, *extra: str) -> int:
    url = f"redis://{settings.host}:{settings.port}/0"
    return manager_main(
        ["serve", "--redis-url", url, "--namespace", settings.namespace, "--input", str(data), "--model", MODEL, *extra]
    )


def test_serve_runs_to_the_end_and_clusters(
    settings: RedisSettings, redis_client: redis.Redis, corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = corpus / "clustered.json"
    script = f"import json,sys; json.dump(sys.argv[1:], open({str(marker)!r}, 'w'))"
    command = shlex.join([sys.executable, "-c", script, "{output_root}", "{run_id}"])
    worker = FakeWorker(settings, "w").start()
    try:
        rc = serve(settings, corpus, "--no-api", "--no-advertise", "--cluster-command", command)
    finally:
        worker.stop()
    assert rc == 0
    out = capsys.readouterr().out
    assert "DONE" in out and "jobs planned 4: done 4, skipped 0, failed 0" in out
    run = latest_run_dir(corpus)
    assert run is not None and verify_run(run).ok
    args = json.loads(marker.read_text())
    assert args == [str(corpus), run.name]
    assert read_state(run)["cluster"]["exit_code"] == 0


def test_serve_exits_non_zero_on_dead_letters(settings: RedisSettings, redis_client: redis.Redis, corpus: Path) -> None:
    worker = FakeWorker(settings, "w", fail=lambda job: f"{job.path}: corrupt footer").start()
    try:
        assert serve(settings, corpus, "--no-api", "--no-advertise") == 1
    finally:
        worker.stop()


def test_a_failing_cluster_command_is_an_error(
    settings: RedisSettings, redis_client: redis.Redis, corpus: Path
) -> None:
    worker = FakeWorker(settings, "w").start()
    try:
        rc = serve(
            settings,
            corpus,
            "--no-api",
            "--no-advertise",
            "--cluster-command",
            shlex.join([sys.executable, "-c", "raise SystemExit(3)"]),
        )
    finally:
        worker.stop()
    assert rc == 2


def test_serve_advertises_and_serves_while_it_runs(
    settings: RedisSettings, redis_client: redis.Redis, corpus: Path
) -> None:
    port = free_port()
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(serve(settings, corpus, "--port", str(port))))
    runner.start()
    try:
        found = find_redis_url(timeout_s=5.0, namespace=settings.namespace)
        assert found is not None and found.endswith(f":{settings.port}/0")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            run = httpx.get(f"http://127.0.0.1:{port}/api/v1/status", timeout=5).json()["run"]
            if run["stage"] == "embedding":
                break
            time.sleep(0.05)
        assert run["stage"] == "embedding" and run["jobs"]["planned"] == 4  # no worker yet: it waits
    finally:
        worker = FakeWorker(settings, "late").start()  # lets the run finish
        runner.join(30)
        worker.stop()
    assert result == [0]
