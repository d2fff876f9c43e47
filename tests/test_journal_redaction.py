"""Planted secrets (the Redis password in the URL, the dashboard token, an
API key) never reach any file the manager writes, any API response, the
terminal, or the logs, even when a worker leaks them into its errors."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from bus.redis_transport import RedisTransport, connect
from bus.settings import RedisSettings
from manager.__main__ import main as manager_main
from manager.cli import redact_logs
from manager.coordinator import Coordinator, CoordinatorOptions
from tests.support.fakes import FakeWorker, make_jobs
from tests.support.procs import free_port
from tests.support.redis_server import start_redis


class Planted:
    password = "Pw-" + secrets.token_hex(12)
    token = "dash-" + secrets.token_hex(16)
    api_key = "sk-" + secrets.token_hex(20)  # key-shaped, and told to nobody
    env_secret = "envsecret-" + secrets.token_hex(8)

    @classmethod
    def all(cls) -> dict[str, str]:
        return {"password": cls.password, "token": cls.token, "api_key": cls.api_key, "env": cls.env_secret}


@pytest.fixture
def locked_redis(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = start_redis(tmp_path / "redis", port)
    redis.Redis(port=port).config_set("requirepass", Planted.password)  # start_redis pings without a password
    yield f"redis://:{Planted.password}@127.0.0.1:{port}/0"
    proc.kill()
    proc.wait(10)


def leak(url: str) -> str:
    return (
        f"cannot open {url}: auth failed; api_key={Planted.api_key}; Authorization: Bearer {Planted.token} "
        f"{Planted.api_key}"
    )


def test_planted_secrets_never_leave_the_manager(
    locked_redis: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    url = locked_redis
    monkeypatch.setenv("EMBEDFLEET_DASHBOARD_TOKEN", Planted.token)
    monkeypatch.setenv("SOME_SERVICE_SECRET", Planted.env_secret)
    caplog.set_level(logging.DEBUG)
    log_file = tmp_path / "manager.log"
    file_handler = logging.FileHandler(log_file)
    logging.getLogger().addHandler(file_handler)
    try:
        redact_logs(RedisSettings.from_url(url), Planted.token)  # what every CLI command does first
        responses = run_leaky_fleet(url, tmp_path)
        run_cli(url, tmp_path)
    finally:
        logging.getLogger().removeHandler(file_handler)
        file_handler.close()

    captured = capfd.readouterr()
    texts = {"stdout": captured.out, "stderr": captured.err, "caplog": caplog.text, **responses}
    written = [p for p in tmp_path.rglob("*") if p.is_file() and "redis" not in p.relative_to(tmp_path).parts]
    assert any(p.name == "events.jsonl" for p in written) and log_file in written
    for p in written:
        texts[str(p.relative_to(tmp_path))] = p.read_bytes().decode("utf-8", "replace")
    for where, text in texts.items():
        for name, secret in Planted.all().items():
            assert secret not in text, f"the {name} leaked into {where}"
    journal = next(p for p in written if p.name == "events.jsonl").read_text()
    assert "auth failed; api_key=***" in journal  # the leak was planted, and redacted
    assert "connecting to redis://:***@" in log_file.read_text()


def run_leaky_fleet(url: str, tmp_path: Path) -> dict[str, str]:
    """A run whose worker leaks every secret; returns what the API answered."""
    settings = RedisSettings.from_url(url, namespace="red")
    co = Coordinator(
        settings, output_root=tmp_path / "out", options=CoordinatorOptions(poll_s=0.05), secrets=[Planted.token]
    )
    api = co.serve_api(port=0, token=Planted.token)
    worker = FakeWorker(settings, "leaky", fail=lambda j: leak(url) if j.path.endswith("0001.parquet") else None)
    worker.start()
    RedisTransport(connect(settings), namespace="red").publish_event(
        {"v": 1, "type": "job_retry", "worker": "leaky", "error": leak(url), "path": f"{Planted.api_key}.parquet"}
    )
    logging.getLogger("embedfleet.test").warning("connecting to %s with %s", url, Planted.api_key)
    try:
        summary = co.run(jobs=make_jobs(4))
        assert summary.exit_code == 1 and len(summary.failed) == 1
        print(summary.render())
        auth = {"Authorization": f"Bearer {Planted.token}"}
        paths = (
            "/api/v1/status",
            "/api/v1/workers",
            "/api/v1/failed",
            "/metrics",
            "/api/v1/stream?max_events=1",
            "/api/v1/throughput",
        )
        out = {path: httpx.get(f"{api.url}{path}", headers=auth).text for path in paths}
        opened = httpx.get(f"{api.url}/?token={Planted.token}", follow_redirects=True)  # the dashboard's first visit
        assert opened.status_code == 200
        out["/"] = opened.text
    finally:
        worker.stop()
        api.stop()
    assert "auth failed" in out["/api/v1/failed"]  # the failure is shown, redacted
    return out


def run_cli(url: str, tmp_path: Path) -> None:
    """Status, actions and verify-journal through the command line."""
    base = ["--redis-url", url, "--namespace", "red"]
    assert manager_main(["status", *base, "--output", str(tmp_path / "out"), "--json"]) == 0
    assert manager_main(["status", *base, "--output", str(tmp_path / "out")]) == 0
    assert manager_main(["pause", *base]) == 0
    assert manager_main(["requeue-failed", *base]) == 0
    assert manager_main(["resume", *base]) == 0
    assert manager_main(["verify-journal", str(next((tmp_path / "out" / "runs").iterdir()))]) == 0
    r = redis.Redis.from_url(url)
    assert r.xlen("red:dead") == 0  # requeued: the CLI really talked to the locked Redis
