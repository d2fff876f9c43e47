"""One picture of the run and the fleet, shared by the HTTP API, the
dashboard's event stream and ``python -m manager status``.

The fleet comes from Redis (``FleetView``); the run comes from a live
coordinator when there is one (``RunProbe``), else from the latest
``state.json`` on disk (``FileRunProbe``). Actions go to Redis (pause,
resume, drain, requeue-failed) or to the coordinator (cluster-now).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bus.errors import EmbedfleetError
from bus.redis_transport import RedisError
from bus.settings import RedisSettings
from manager import actions
from manager.fleet import FleetView
from manager.state import latest_run_dir, read_state


class RunProbe(Protocol):
    """What a live run offers the hub (``Coordinator`` implements it)."""

    def run_status(self) -> dict[str, Any]: ...

    def throughput_series(self) -> dict[str, Any]: ...

    def request_cluster(self) -> tuple[bool, str]: ...

    def note_action(self, action: str, detail: str, source: str = "api") -> None: ...


@dataclass
class FileRunProbe:
    """A run seen through its ``state.json`` (no live coordinator)."""

    run_dir: Path | None = None
    output_root: Path | None = None

    def _dir(self) -> Path | None:
        if self.run_dir is not None:
            return self.run_dir
        return latest_run_dir(self.output_root) if self.output_root is not None else None

    def run_status(self) -> dict[str, Any]:
        d = self._dir()
        if d is None or not (d / "state.json").is_file():
            return {}
        return read_state(d)

    def throughput_series(self) -> dict[str, Any]:
        return {}

    def request_cluster(self) -> tuple[bool, str]:
        return False, "no run is being coordinated by this process"

    def note_action(self, action: str, detail: str, source: str = "api") -> None:
        return None


class ActionError(Exception):
    """An action that cannot be taken now (HTTP 409)."""


class StatusHub:
    """Reads status, workers, failures and throughput; performs actions."""

    def __init__(self, fleet: FleetView, run: RunProbe | None = None, settings: RedisSettings | None = None) -> None:
        self.fleet = fleet
        self.run: RunProbe = run if run is not None else FileRunProbe()
        self.settings = settings

    @property
    def redactor(self) -> Any:
        return self.fleet.redactor

    def _rates(self) -> dict[str, float]:
        rates = self.run.run_status().get("throughput", {})
        workers = rates.get("workers", {}) if isinstance(rates, dict) else {}
        return {str(k): float(v) for k, v in workers.items()}

    def status(self) -> dict[str, Any]:
        """Run stage and progress, fleet counters, controls, lanes."""
        return self.status_and_workers()[0]

    def status_and_workers(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Status and the worker list from one read of the registry."""
        workers: list[dict[str, Any]] = []
        try:
            workers = self.fleet.workers(self._rates())
            bus = {
                "reachable": True,
                "redis_time_ms": self.fleet.redis_time_ms(),
                "stats": self.fleet.stats(),
                "controls": self.fleet.controls(),
                "lanes": self.fleet.lanes(),
                "failed": self.fleet.failed_count(),
                "workers": {"total": len(workers), "healthy": sum(1 for w in workers if w["healthy"])},
            }
        except (EmbedfleetError, RedisError) as e:  # unreachable, or the login refused
            bus = {"reachable": False, "error": self.redactor.text(str(e))}
        return self.redactor.scrub({"run": self.run.run_status() or None, "bus": bus}), workers

    def workers(self) -> list[dict[str, Any]]:
        return self.fleet.workers(self._rates())

    def failed(self, limit: int = 100) -> list[dict[str, Any]]:
        return self.fleet.failed(limit)

    def throughput(self) -> dict[str, Any]:
        return self.run.throughput_series()

    def snapshot(self) -> dict[str, Any]:
        """Everything the dashboard shows, in one message (the run's scan
        errors are in ``status.run.scan_errors``)."""
        status, workers = self.status_and_workers()
        reachable = status["bus"].get("reachable", False)
        return {
            "status": status,
            "workers": workers,
            "failed": self.failed(20) if reachable else [],
            "throughput": self.throughput(),
        }

    def act(self, name: str, source: str = "api") -> dict[str, Any]:
        """Perform one action; ``ActionError`` when it cannot apply now."""
        r, ns = self.fleet.r, self.fleet.keys.namespace
        if name == "pause":
            detail = actions.pause(r, ns)
        elif name == "resume":
            detail = actions.resume(r, ns)
        elif name == "drain":
            detail = actions.drain(r, ns)
        elif name == "requeue-failed":
            res = actions.requeue_failed(r, ns)
            detail = f"{res.requeued} dead-lettered jobs requeued, {res.skipped} left alone"
        elif name == "cluster-now":
            ok, detail = self.run.request_cluster()
            if not ok:
                raise ActionError(detail)
        else:
            raise KeyError(name)
        self.run.note_action(name, detail, source)
        return {"ok": True, "action": name, "detail": detail}
