"""The status API and dashboard (Starlette ASGI), documented by OpenAPI.

Routes: ``GET /api/v1/status``, ``/api/v1/workers``, ``/api/v1/failed``,
``/api/v1/throughput``, ``POST /api/v1/actions/{pause,resume,drain,
requeue-failed,cluster-now}``, ``GET /api/v1/stream`` (server-sent events),
``/metrics`` (Prometheus), ``/openapi.json``, ``/`` (the dashboard, no build
step: ``manager/dashboard/``). Auth rules: ``manager.auth``.

``create_app(hub, token=...)`` builds the app; ``ApiServer`` runs it with
uvicorn in a background thread (``start``/``stop``) or in the foreground
(``serve_forever``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from bus.errors import BusUnavailable, EmbedfleetError
from manager import metrics
from manager.actions import ACTIONS
from manager.auth import (
    ACTION_HEADER,
    COOKIE,
    LOOPBACK_NAMES,
    bearer,
    check_bind,
    host_allowed,
    is_loopback,
    token_matches,
)
from manager.hub import ActionError, StatusHub
from manager.openapi import document
from manager.published import announcement

log = logging.getLogger("embedfleet.api")
DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboard"


def _error(status: int, error: str, detail: str | None = None, **headers: str) -> JSONResponse:
    body = {"error": error, **({"detail": detail} if detail else {})}
    return JSONResponse(body, status_code=status, headers=headers or None)


class Guard:
    """ASGI middleware: Host check, token check, action header check."""

    def __init__(
        self,
        app: ASGIApp,
        token: str | None,
        allowed_hosts: tuple[str, ...] | None,
        stopping: threading.Event | None = None,
    ) -> None:
        self.app = app
        self.token = token
        self.allowed_hosts = allowed_hosts
        self.stopping = stopping or threading.Event()
        """Set when the server shuts down: open event streams end at once."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refusal = self.refuse(request)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        if self.token and request.url.path == "/" and request.query_params.get("token"):
            # A valid token in the address: keep it in a cookie, drop it from the address.
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(
                COOKIE, self.token, httponly=True, samesite="strict", secure=request.url.scheme == "https"
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def refuse(self, request: Request) -> Response | None:
        if self.allowed_hosts is not None and not host_allowed(request.headers.get("host"), self.allowed_hosts):
            return _error(403, "forbidden", "this server answers to loopback host names only")
        if self.token:
            given = bearer(request.headers.get("authorization")) or request.cookies.get(COOKIE)
            if given is None and request.url.path == "/":
                given = request.query_params.get("token")
            if not token_matches(given, self.token):
                return _error(
                    401,
                    "unauthorized",
                    "a valid bearer token is required",
                    **{"WWW-Authenticate": 'Bearer realm="embedfleet"'},
                )
        if request.method == "POST" and request.headers.get(ACTION_HEADER) != "1":
            return _error(403, "forbidden", "actions need the header X-Embedfleet-Action: 1")
        return None


def _int_param(request: Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    value = int(raw)  # ValueError -> 400 by the handler below
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}")
    return value


def _float_param(request: Request, name: str, default: float, lo: float, hi: float) -> float:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    value = float(raw)
    if not lo <= value <= hi:  # also refuses nan
        raise ValueError(f"{name} must be between {lo} and {hi}")
    return value


def create_app(hub: StatusHub, token: str | None = None, allowed_hosts: tuple[str, ...] | None = None) -> ASGIApp:
    """The ASGI app. ``allowed_hosts`` restricts the ``Host`` header."""
    spec = document()
    stopping = threading.Event()

    def status(_: Request) -> Response:
        return JSONResponse(hub.status())

    def workers(_: Request) -> Response:
        return JSONResponse({"workers": hub.workers()})

    def failed(request: Request) -> Response:
        limit = _int_param(request, "limit", 100, 1, 1000) or 100
        return JSONResponse({"failed": hub.failed(limit), "total": hub.fleet.failed_count()})

    def throughput(_: Request) -> Response:
        return JSONResponse(hub.throughput())

    def action(request: Request) -> Response:
        name = request.path_params["action"]
        if name not in ACTIONS:
            return _error(404, "not found", f"unknown action; one of {', '.join(ACTIONS)}")
        try:
            result = hub.act(name)
        except ActionError as e:
            return _error(409, "conflict", str(e))
        log.info("action %s: %s", name, result["detail"])
        return JSONResponse(result)

    def prometheus(_: Request) -> Response:
        status, workers = hub.status_and_workers()
        return PlainTextResponse(metrics.render(status, workers), media_type=metrics.CONTENT_TYPE)

    def openapi(_: Request) -> Response:
        return JSONResponse(spec)

    def index(_: Request) -> Response:
        return FileResponse(DASHBOARD_DIR / "index.html", headers={"Cache-Control": "no-store"})

    async def stream(request: Request) -> Response:
        interval = _float_param(request, "interval", 1.0, 0.2, 10.0)
        limit = _int_param(request, "max_events", None, 1, 1_000_000)
        return StreamingResponse(
            _events(request, hub, interval, limit, stopping),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    routes = [
        Route("/", index),
        Route("/api/v1/status", status),
        Route("/api/v1/workers", workers),
        Route("/api/v1/failed", failed),
        Route("/api/v1/throughput", throughput),
        Route("/api/v1/actions/{action}", action, methods=["POST"]),
        Route("/api/v1/stream", stream),
        Route("/metrics", prometheus),
        Route("/openapi.json", openapi),
        Mount("/static", StaticFiles(directory=DASHBOARD_DIR), name="static"),
    ]
    handlers = {
        ValueError: lambda _r, e: _error(400, "bad request", str(e)),
        BusUnavailable: lambda _r, e: _error(503, "unavailable", str(e)),
        EmbedfleetError: lambda _r, e: _error(503, "unavailable", str(e)),  # e.g. Redis refused the login
    }
    app = Starlette(routes=routes, exception_handlers=handlers)  # type: ignore[arg-type]
    return Guard(app, token, allowed_hosts, stopping)


async def _events(
    request: Request, hub: StatusHub, interval: float, limit: int | None, stopping: threading.Event
) -> Any:
    sent = 0
    while (limit is None or sent < limit) and not stopping.is_set():
        try:
            snap = await run_in_threadpool(hub.snapshot)
            yield f"event: snapshot\nid: {sent}\ndata: {json.dumps(snap, separators=(',', ':'))}\n\n"
        except BusUnavailable as e:
            yield f"event: bus_unavailable\ndata: {json.dumps({'error': str(e)})}\n\n"
        sent += 1
        if limit is not None and sent >= limit:
            return
        if await request.is_disconnected():
            return
        deadline = time.monotonic() + interval
        while time.monotonic() < deadline and not stopping.is_set():
            await asyncio.sleep(min(0.1, interval))


class ApiServer:
    """Runs the app with uvicorn; refuses a non-loopback bind without token."""

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 8765, token: str | None = None) -> None:
        check_bind(host, token)
        self.host, self.port = host, port
        allowed = LOOPBACK_NAMES if is_loopback(host) else None
        if allowed is not None and isinstance(app, Guard):
            app.allowed_hosts = allowed
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            # uvicorn's own start-up lines name the bound address ("running on
            # http://0.0.0.0:8377 (Press CTRL+C to quit)"), which in a container
            # is not the one to open: the start() line names that one.
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
            ws="none",
        )
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _bound_port(self) -> int:
        for srv in getattr(self.server, "servers", []):
            for sock in srv.sockets:
                return int(sock.getsockname()[1])
        return self.port

    def start(self, timeout_s: float = 10.0) -> ApiServer:
        """Serve in a daemon thread; returns once the socket is listening."""
        self._thread = threading.Thread(target=self.server.run, name="embedfleet-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"status API did not start on {self.host}:{self.port}")
            time.sleep(0.02)
        self.port = self._bound_port()
        log.info("status API and dashboard on %s", announcement(self.url))
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        app = self.server.config.app
        if isinstance(app, Guard):
            app.stopping.set()
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        log.info("status API and dashboard on %s", announcement(self.url))
        self.server.run()
