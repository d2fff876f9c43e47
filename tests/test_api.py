"""The status API: every route against a real Redis, auth (no token 401,
wrong token 401), the host and action-header guards, refusing to start
beyond loopback without a token, Prometheus text, server-sent events."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from starlette.testclient import TestClient

from bus.redis_transport import RedisTransport
from bus.settings import RedisSettings
from manager.api import ApiServer, create_app
from manager.auth import InsecureBind, token_matches
from manager.coordinator import Coordinator, CoordinatorOptions
from manager.fleet import FleetView
from manager.hub import FileRunProbe, StatusHub
from manager.state import write_atomic
from tests.support.api import TOKEN, populate
from tests.support.fakes import make_jobs
from tests.support.procs import free_port

ACT = {"X-Embedfleet-Action": "1"}


@pytest.fixture
def hub(settings: RedisSettings, transport: RedisTransport, tmp_path: Path) -> StatusHub:
    populate(transport)
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    write_atomic(
        run / "state.json",
        {
            "run_id": "r1",
            "stage": "embedding",
            "progress": 0.5,
            "eta_s": 12.0,
            "jobs": {"planned": 2, "done": 1, "failed": 1},
            "rows": 10,
        },
    )
    return StatusHub(FleetView.from_settings(settings), run=FileRunProbe(output_root=tmp_path), settings=settings)


@pytest.fixture
def client(hub: StatusHub) -> Iterator[TestClient]:
    with TestClient(create_app(hub)) as c:
        yield c


def test_status_reports_the_run_and_the_bus(client: TestClient) -> None:
    body = client.get("/api/v1/status").json()
    assert body["run"]["run_id"] == "r1" and body["run"]["stage"] == "embedding"
    bus = body["bus"]
    assert bus["reachable"] and bus["stats"]["done"] == 1 and bus["stats"]["dead"] == 1
    assert bus["failed"] == 1 and bus["workers"] == {"total": 1, "healthy": 1}
    assert bus["lanes"] == [{"lane": "default", "waiting": 0, "in_flight": 0, "delayed": 0}]
    assert bus["controls"] == {"paused": False, "drain": False}


def test_workers_show_health_and_heartbeat_age_from_redis_time(client: TestClient, redis_client: redis.Redis) -> None:
    (w,) = client.get("/api/v1/workers").json()["workers"]
    assert (w["worker_id"], w["host"], w["kind"], w["device"], w["version"]) == ("w-1", "hostA", "rust", "cpu", "0.1.0")
    assert w["healthy"] and 0 <= w["heartbeat_age_s"] < 5 and w["rows_per_s"] == 12.5 and w["current_job"] is None
    sec, _ = redis_client.time()
    redis_client.hset("eftest:workers:seen", "w-1", (int(sec) - 60) * 1000)  # a minute without heartbeat
    (w,) = client.get("/api/v1/workers").json()["workers"]
    assert not w["healthy"] and w["heartbeat_age_s"] >= 59


def test_failed_lists_dead_letters_with_reasons(client: TestClient) -> None:
    body = client.get("/api/v1/failed").json()
    assert body["total"] == 1
    (f,) = body["failed"]
    assert f["path"] == "chains/2024-01/s/part-0001.parquet" and f["attempts"] == 1 and f["worker"] == "w-1"
    assert f["reason"] == "chains/2024-01/s/part-0001.parquet: missing column 'text'"
    assert client.get("/api/v1/failed?limit=0").status_code == 400
    assert client.get("/api/v1/failed?limit=abc").status_code == 400


def test_actions_steer_the_fleet(client: TestClient, transport: RedisTransport) -> None:
    assert client.post("/api/v1/actions/pause", headers=ACT).json()["ok"]
    assert transport.controls().paused
    assert client.post("/api/v1/actions/drain", headers=ACT).status_code == 200
    assert transport.controls().drain
    client.post("/api/v1/actions/resume", headers=ACT)
    assert not transport.controls().paused and not transport.controls().drain
    body = client.post("/api/v1/actions/requeue-failed", headers=ACT).json()
    assert body["detail"].startswith("1 dead-lettered jobs requeued")
    assert client.get("/api/v1/failed").json()["total"] == 0
    # cluster-now needs a live coordinator; unknown actions do not exist
    assert client.post("/api/v1/actions/cluster-now", headers=ACT).status_code == 409
    assert client.post("/api/v1/actions/explode", headers=ACT).status_code == 404


def test_actions_need_the_action_header(client: TestClient, transport: RedisTransport) -> None:
    r = client.post("/api/v1/actions/pause")
    assert r.status_code == 403 and not transport.controls().paused
    assert client.get("/api/v1/actions/pause").status_code == 405


def test_metrics_are_prometheus_text(client: TestClient) -> None:
    r = client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for line in r.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    assert samples["embedfleet_bus_up"] == 1
    assert samples['embedfleet_bus_jobs{state="dead"}'] == 1 and samples['embedfleet_bus_jobs_total{event="done"}'] == 1
    assert samples['embedfleet_worker_healthy{device="cpu",host="hostA",kind="rust",worker="w-1"}'] == 1
    assert samples['embedfleet_run_stage{stage="embedding"}'] == 1
    assert samples["embedfleet_run_progress_ratio"] == 0.5
    assert "# TYPE embedfleet_run_rows_total counter" in r.text


def test_openapi_document_lists_every_route(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert {
        "/api/v1/status",
        "/api/v1/workers",
        "/api/v1/failed",
        "/api/v1/actions/{action}",
        "/metrics",
        "/api/v1/stream",
        "/api/v1/throughput",
    } <= set(spec["paths"])


def test_stream_pushes_snapshots(client: TestClient) -> None:
    r = client.get("/api/v1/stream?max_events=2&interval=0.2")
    assert r.headers["content-type"].startswith("text/event-stream")
    events = [e for e in r.text.split("\n\n") if e.strip()]
    assert len(events) == 2
    snap = json.loads(events[0].split("data: ", 1)[1])
    assert set(snap) == {"status", "workers", "failed", "throughput"}
    assert snap["workers"][0]["worker_id"] == "w-1"
    assert client.get("/api/v1/stream?interval=0").status_code == 400


def test_dashboard_page_and_assets_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "<title>embedfleet</title>" in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200


# -- auth ------------------------------------------------------------------
@pytest.fixture
def guarded(hub: StatusHub) -> Iterator[TestClient]:
    with TestClient(create_app(hub, token=TOKEN)) as c:
        yield c


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/status",
        "/api/v1/workers",
        "/api/v1/failed",
        "/metrics",
        "/openapi.json",
        "/",
        "/static/app.js",
        "/api/v1/stream?max_events=1",
    ],
)
def test_no_token_is_401(guarded: TestClient, path: str) -> None:
    r = guarded.get(path)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert TOKEN not in r.text


@pytest.mark.parametrize(
    "header",
    [
        f"Bearer {TOKEN[:-1]}x",
        f"Bearer {TOKEN}x",
        "Bearer",
        f"Basic {TOKEN}",
        TOKEN,
        "Bearer ünïcode".encode("latin-1"),
    ],
)
def test_wrong_token_is_401(guarded: TestClient, header: str | bytes) -> None:
    assert guarded.get("/api/v1/status", headers={"Authorization": header}).status_code == 401
    assert guarded.post("/api/v1/actions/pause", headers={"Authorization": header, **ACT}).status_code == 401


def test_right_token_is_accepted(guarded: TestClient, transport: RedisTransport) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert guarded.get("/api/v1/status", headers=auth).status_code == 200
    assert guarded.post("/api/v1/actions/pause", headers={**auth, **ACT}).status_code == 200
    assert transport.controls().paused


def test_token_in_the_address_becomes_a_cookie(guarded: TestClient) -> None:
    assert guarded.get("/?token=wrong", follow_redirects=False).status_code == 401
    r = guarded.get(f"/?token={TOKEN}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert guarded.get("/api/v1/status").status_code == 200  # the cookie now authenticates


def test_query_token_only_opens_the_page(hub: StatusHub) -> None:
    with TestClient(create_app(hub, token=TOKEN)) as fresh:
        assert fresh.get(f"/api/v1/status?token={TOKEN}").status_code == 401


def test_constant_time_comparison_handles_any_text() -> None:
    assert token_matches(TOKEN, TOKEN)
    assert not token_matches(None, TOKEN) and not token_matches("", TOKEN) and not token_matches("ü", TOKEN)


def test_loopback_bind_answers_loopback_host_names_only(hub: StatusHub) -> None:
    app = create_app(hub, allowed_hosts=("localhost", "127.0.0.1"))
    with TestClient(app, base_url="http://127.0.0.1:8377") as c:
        assert c.get("/api/v1/status").status_code == 200
    with TestClient(app, base_url="http://evil.example:8377") as c:  # DNS rebinding
        assert c.get("/api/v1/status").status_code == 403


def test_server_refuses_to_bind_beyond_loopback_without_a_token(hub: StatusHub) -> None:
    with pytest.raises(InsecureBind, match="EMBEDFLEET_DASHBOARD_TOKEN"):
        ApiServer(create_app(hub), host="0.0.0.0", port=free_port())
    with pytest.raises(InsecureBind):
        ApiServer(create_app(hub), host="192.0.2.10", port=free_port(), token="")
    ApiServer(create_app(hub, token=TOKEN), host="0.0.0.0", port=free_port(), token=TOKEN)  # allowed, not started


def test_serve_command_refuses_to_start_without_a_token(
    settings: RedisSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from manager.__main__ import main

    monkeypatch.delenv("EMBEDFLEET_DASHBOARD_TOKEN", raising=False)
    url = f"redis://{settings.host}:{settings.port}/0"
    rc = main(["serve", "--redis-url", url, "--input", str(tmp_path), "--host", "0.0.0.0", "--no-advertise"])
    assert rc == 2 and "EMBEDFLEET_DASHBOARD_TOKEN" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # refused before doing anything


def test_live_server_with_token(settings: RedisSettings, transport: RedisTransport, tmp_path: Path) -> None:
    co = Coordinator(settings, output_root=tmp_path, options=CoordinatorOptions(poll_s=0.05))
    api = co.serve_api(port=0, token=TOKEN)
    try:
        assert httpx.get(f"{api.url}/api/v1/status").status_code == 401
        r = httpx.get(f"{api.url}/api/v1/status", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401
        r = httpx.get(f"{api.url}/api/v1/status", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200 and r.json()["run"]["stage"] == "init"
        r = httpx.get(f"{api.url}/api/v1/status", headers={"Host": "evil.example", "Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 403  # bound to loopback: loopback host names only
    finally:
        api.stop()


def test_redis_down_gives_503_not_500(tmp_path: Path) -> None:
    dead = RedisSettings.from_url(f"redis://127.0.0.1:{free_port()}/0", namespace="nobody")
    hub = StatusHub(FleetView.from_settings(dead), run=FileRunProbe(output_root=tmp_path))
    with TestClient(create_app(hub)) as c:
        status = c.get("/api/v1/status")
        assert status.status_code == 200 and status.json()["bus"]["reachable"] is False
        assert c.get("/api/v1/workers").status_code == 503
        assert c.get("/api/v1/failed").status_code == 503
        assert c.post("/api/v1/actions/pause", headers=ACT).status_code == 503
        assert c.get("/metrics").text.startswith("# HELP embedfleet_bus_up")


def test_live_coordinator_exposes_cluster_now(
    settings: RedisSettings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    import threading

    co = Coordinator(settings, output_root=tmp_path, options=CoordinatorOptions(poll_s=0.05))
    api = co.serve_api(port=0)
    calls: list[Any] = []
    t = threading.Thread(
        target=lambda: calls.append(co.run(cluster=lambda r: {"partial": r.partial}, jobs=make_jobs(3)))
    )
    t.start()
    try:
        deadline = time.monotonic() + 10
        while co.run_status()["stage"] != "embedding" and time.monotonic() < deadline:
            time.sleep(0.02)
        r = httpx.post(f"{api.url}/api/v1/actions/cluster-now", headers=ACT)
        assert r.status_code == 200, r.text
        t.join(10)
        assert calls[0].cluster == {"partial": True}
        r = httpx.post(f"{api.url}/api/v1/actions/cluster-now", headers=ACT)
        assert r.status_code == 409  # the run is over
    finally:
        co.stop()
        t.join(10)
        api.stop()
