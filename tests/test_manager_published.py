"""The manager's start-up line names the dashboard address a person can open:
the host's published address under Compose, not the container's 0.0.0.0."""

from __future__ import annotations

import logging

import pytest
from starlette.applications import Starlette

from manager.api import ApiServer
from manager.published import ENV_PUBLISHED, announcement, display_url, published_url


@pytest.mark.parametrize(
    ("spec", "url"),
    [
        ("127.0.0.1:8377", "http://127.0.0.1:8377/"),
        ("8377", "http://127.0.0.1:8377/"),
        ("0.0.0.0:18377", "http://127.0.0.1:18377/"),
        ("192.0.2.7:8377", "http://192.0.2.7:8377/"),
        ("[::1]:8377", "http://[::1]:8377/"),
        ("", None),
        ("127.0.0.1:", None),
        ("127.0.0.1:http", None),
    ],
)
def test_published_url_of_a_compose_port_spec(spec: str, url: str | None) -> None:
    assert published_url(spec) == url


def test_without_a_published_port_the_listen_address_is_announced() -> None:
    assert announcement("http://127.0.0.1:8377", {}) == "http://127.0.0.1:8377/"
    assert display_url("http://127.0.0.1:8377", {}) == "http://127.0.0.1:8377/"


def test_with_a_published_port_that_address_is_shown() -> None:
    assert display_url("http://0.0.0.0:8377", {ENV_PUBLISHED: "0.0.0.0:9000"}) == "http://127.0.0.1:9000/"


def test_server_start_line_names_the_published_address(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(ENV_PUBLISHED, "127.0.0.1:18377")
    server = ApiServer(Starlette(), host="127.0.0.1", port=0)
    with caplog.at_level(logging.INFO):
        server.start()
        try:
            listen = server.url
        finally:
            server.stop()
    lines = [r.getMessage() for r in caplog.records if "dashboard on" in r.getMessage()]
    assert lines == [
        f"status API and dashboard on http://127.0.0.1:18377/ (published on the host; "
        f"the manager listens on {listen} inside its container)"
    ]
    # uvicorn's own line with the bound address is not printed at users.
    assert not [r for r in caplog.records if "Uvicorn running on" in r.getMessage()]
