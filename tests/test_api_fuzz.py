"""Schemathesis fuzzes the status API from the OpenAPI document it serves,
against a live coordinator and a real Redis: no request may get a 5xx, and
every response must match the document (status code, content type, headers,
schema). The guarded app (token set) is fuzzed with and without the token.

The event stream never ends by design; it is excluded here and tested in
``tests/test_api.py``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from bus.redis_transport import RedisTransport
from bus.settings import RedisSettings
from manager.api import create_app
from manager.coordinator import Coordinator, CoordinatorOptions
from manager.fleet import FleetView
from manager.hub import StatusHub
from manager.openapi import document
from tests.support.api import TOKEN, populate

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def coordinator(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coordinator]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    populate(RedisTransport(client, namespace="fuzz"))
    s = RedisSettings.from_url(redis_url, namespace="fuzz")
    co = Coordinator(s, output_root=tmp_path_factory.mktemp("fuzz"), options=CoordinatorOptions(poll_s=0.05))
    yield co
    co.journal.close()
    client.flushdb()
    client.close()


class LateHub:
    """Stands in for the hub while pytest collects: schemathesis needs the app
    (to read its document) before the Redis fixture exists."""

    target: Any = None

    def __getattr__(self, name: str) -> Any:
        if LateHub.target is None:
            raise RuntimeError("the fuzz fixture has not started")
        return getattr(LateHub.target, name)


OPEN_APP = create_app(LateHub())  # type: ignore[arg-type]
GUARDED_APP = create_app(LateHub(), token=TOKEN)  # type: ignore[arg-type]
open_schema = schemathesis.openapi.from_asgi("/openapi.json", OPEN_APP).exclude(path="/api/v1/stream")
guarded_schema = schemathesis.openapi.from_asgi(
    "/openapi.json", GUARDED_APP, headers={"Authorization": f"Bearer {TOKEN}"}
).exclude(path="/api/v1/stream")


@pytest.fixture(scope="module", autouse=True)
def _live_hub(coordinator: Coordinator) -> Iterator[None]:
    LateHub.target = StatusHub(FleetView.from_settings(coordinator.settings), run=coordinator)
    yield
    LateHub.target = None


@open_schema.parametrize()
@FUZZ
def test_api_conforms_to_its_document(case: schemathesis.Case) -> None:
    case.call_and_validate()


@guarded_schema.parametrize()
@FUZZ
def test_guarded_api_conforms_with_the_token_and_refuses_without(case: schemathesis.Case) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"})
    anonymous = case.call(headers={"Authorization": "Bearer not-the-token"})
    assert anonymous.status_code == 401
    case.validate_response(anonymous, checks=[not_a_server_error])


def test_the_served_document_is_the_module_document() -> None:
    assert open_schema.raw_schema == document()
