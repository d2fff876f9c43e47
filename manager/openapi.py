"""The status API's OpenAPI 3.0 document (served at ``/openapi.json``).

Written by hand next to the handlers in ``manager.api``; the fuzz test
(``tests/test_api_fuzz.py``) generates requests from it and checks every
response against it, so the two cannot drift apart silently.
"""

from __future__ import annotations

from typing import Any

from manager.actions import ACTIONS
from manager.state import Stage

API_VERSION = "1.0.0"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "401": _json(_ref("Error"), "missing or wrong token"),
    "403": _json(_ref("Error"), "request refused (host not allowed, or the action header is missing)"),
    "503": _json(_ref("Error"), "Redis is unreachable"),
}
_NUM_MAP = {"type": "object", "additionalProperties": {"type": "number"}}
_SERIES_MAP = {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "number"}}}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
    },
    "Run": {
        "type": "object",
        "description": "The run as its coordinator sees it (the content of state.json).",
        "properties": {
            "run_id": {"type": "string"},
            "stage": {"type": "string", "enum": [s.value for s in Stage]},
            "final": {"type": "boolean"},
            "progress": {"type": "number", "minimum": 0, "maximum": 1},
            "eta_s": {"type": "number", "nullable": True},
            "rows": {"type": "integer"},
            "model_calls": {"type": "integer"},
            "rows_reused": {"type": "integer"},
            "rows_per_s": {
                "type": "number",
                "description": "the fleet's current speed: sum of the recently working workers' rows per busy second",
            },
            "jobs": {"type": "object", "additionalProperties": {"type": "integer"}},
            "throughput": {
                "type": "object",
                "description": "rows per busy second (rows / seconds the workers held jobs), per worker and per "
                "device class, and the totals they come from",
                "properties": {
                    "workers": _NUM_MAP,
                    "classes": _NUM_MAP,
                    "totals": {
                        "type": "object",
                        "additionalProperties": {
                            "type": "object",
                            "additionalProperties": {"type": "object", "additionalProperties": {"type": "number"}},
                        },
                    },
                },
            },
            "job_seconds": {
                "type": "object",
                "description": "histogram of the seconds each finished job took, per device class",
                "properties": {
                    "le": {"type": "array", "items": {"type": "number"}},
                    "counts": {
                        "type": "object",
                        "additionalProperties": {"type": "array", "items": {"type": "integer"}},
                    },
                    "sum_s": _NUM_MAP,
                },
            },
            "failures_by_reason": {
                "type": "object",
                "description": "failures by source (worker, scan) and reason class",
                "additionalProperties": {"type": "object", "additionalProperties": {"type": "integer"}},
            },
            "scan_errors": {
                "type": "array",
                "description": "inputs the scan could not read (the first 100)",
                "items": {
                    "type": "object",
                    "properties": {"path": {"type": "string"}, "reason": {"type": "string"}},
                },
            },
            "controls": {"type": "object", "additionalProperties": {"type": "boolean"}},
            "error": {"type": "string", "nullable": True},
        },
    },
    "Bus": {
        "type": "object",
        "required": ["reachable"],
        "properties": {
            "reachable": {"type": "boolean"},
            "redis_time_ms": {"type": "integer"},
            "stats": {"type": "object", "additionalProperties": {"type": "integer"}},
            "controls": {"type": "object", "properties": {"paused": {"type": "boolean"}, "drain": {"type": "boolean"}}},
            "lanes": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "lane": {"type": "string"},
                        "waiting": {"type": "integer"},
                        "in_flight": {"type": "integer"},
                        "delayed": {"type": "integer"},
                    },
                },
            },
            "failed": {"type": "integer"},
            "workers": {"type": "object", "properties": {"total": {"type": "integer"}, "healthy": {"type": "integer"}}},
            "error": {"type": "string"},
        },
    },
    "Status": {
        "type": "object",
        "required": ["run", "bus"],
        "properties": {"run": {**_ref("Run"), "nullable": True}, "bus": _ref("Bus")},
    },
    "Worker": {
        "type": "object",
        "required": [
            "worker_id",
            "host",
            "kind",
            "device",
            "version",
            "healthy",
            "heartbeat_age_s",
            "current_job",
            "rows_per_s",
        ],
        "properties": {
            "worker_id": {"type": "string"},
            "host": {"type": "string"},
            "pid": {"type": "integer", "nullable": True},
            "kind": {"type": "string", "description": "python or rust"},
            "device": {"type": "string", "description": "cpu, cuda or mps"},
            "version": {"type": "string"},
            "lanes": {"type": "array", "items": {"type": "string"}},
            "state": {"type": "string"},
            "current_job": {"type": "string", "nullable": True},
            "jobs_done": {"type": "integer"},
            "rows_done": {"type": "integer"},
            "rows_per_s": {"type": "number", "description": "as the worker reports it"},
            "rows_per_s_observed": {
                "type": "number",
                "description": "rows per busy second over this run, from its job events",
            },
            "heartbeat_age_s": {"type": "number", "nullable": True, "description": "on Redis's clock"},
            "healthy": {"type": "boolean"},
            "status": {
                "type": "string",
                "enum": ["active", "silent", "stopped"],
                "description": "active: heartbeat within 15 s; silent: late but under 5 min; stopped: said so, "
                "or silent for 5 min",
            },
        },
    },
    "DeadLetter": {
        "type": "object",
        "required": ["entry_id", "reason", "attempts"],
        "properties": {
            "entry_id": {"type": "string"},
            "ts_ms": {"type": "integer"},
            "job_id": {"type": "string", "nullable": True},
            "path": {"type": "string", "nullable": True},
            "lane": {"type": "string", "nullable": True},
            "reason": {"type": "string"},
            "attempts": {"type": "integer"},
            "worker": {"type": "string"},
        },
    },
    "Throughput": {
        "type": "object",
        "description": "Rows per second per time bucket, by worker and by device class (kind/device); "
        "each job's rows are spread over the seconds it ran.",
        "properties": {
            "bucket_s": {"type": "number"},
            "t": {"type": "array", "items": {"type": "number"}},
            "workers": _SERIES_MAP,
            "classes": _SERIES_MAP,
        },
    },
    "ActionResult": {
        "type": "object",
        "required": ["ok", "action", "detail"],
        "properties": {"ok": {"type": "boolean"}, "action": {"type": "string"}, "detail": {"type": "string"}},
    },
}


def _get(summary: str, schema: dict[str, Any], params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {"200": _json(schema, "OK"), **_ERRORS}}
    if params:
        op["parameters"] = params
        op["responses"]["400"] = _json(_ref("Error"), "bad parameter")
    return {"get": op}


def _action_op() -> dict[str, Any]:
    return {
        "post": {
            "summary": "Steer the fleet: pause, resume, drain, requeue-failed, cluster-now.",
            "parameters": [
                {"name": "action", "in": "path", "required": True, "schema": {"type": "string", "enum": list(ACTIONS)}},
                {
                    "name": "X-Embedfleet-Action",
                    "in": "header",
                    "required": True,
                    "description": "must be 1 (a cross-site form cannot send it)",
                    "schema": {"type": "string", "enum": ["1"]},
                },
            ],
            "responses": {
                "200": _json(_ref("ActionResult"), "done"),
                "404": _json(_ref("Error"), "unknown action"),
                "409": _json(_ref("Error"), "the action does not apply now"),
                **_ERRORS,
            },
        }
    }


def document() -> dict[str, Any]:
    limit = {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
    }
    stream_params = [
        {
            "name": "interval",
            "in": "query",
            "required": False,
            "schema": {"type": "number", "minimum": 0.2, "maximum": 10, "default": 1},
        },
        {"name": "max_events", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1}},
    ]
    text = {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}
    paths: dict[str, Any] = {
        "/api/v1/status": _get("Run stage, progress, ETA, throughput; bus counters, controls, lanes.", _ref("Status")),
        "/api/v1/workers": _get(
            "Every registered worker with health and speed.",
            {
                "type": "object",
                "required": ["workers"],
                "properties": {"workers": {"type": "array", "items": _ref("Worker")}},
            },
        ),
        "/api/v1/failed": _get(
            "Dead-lettered jobs with reasons, newest first.",
            {
                "type": "object",
                "required": ["failed", "total"],
                "properties": {"failed": {"type": "array", "items": _ref("DeadLetter")}, "total": {"type": "integer"}},
            },
            [limit],
        ),
        "/api/v1/throughput": _get("Throughput over time per worker and per device class.", _ref("Throughput")),
        "/api/v1/actions/{action}": _action_op(),
        "/api/v1/stream": {
            "get": {
                "summary": "Server-sent events: one `snapshot` event (status, workers, failed, throughput) "
                "every interval.",
                "parameters": stream_params,
                "responses": {
                    "200": {
                        "description": "event stream",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "400": _json(_ref("Error"), "bad parameter"),
                    **_ERRORS,
                },
            }
        },
        "/metrics": {"get": {"summary": "Prometheus metrics.", "responses": {"200": text, **_ERRORS}}},
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "embedfleet status API",
            "version": API_VERSION,
            "description": "Status, fleet and actions of an embedfleet run. Bound to 127.0.0.1 by "
            "default; elsewhere every request needs the bearer token.",
        },
        "paths": paths,
        "components": {"schemas": SCHEMAS, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{}, {"bearer": []}],
    }
