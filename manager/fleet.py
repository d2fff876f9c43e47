"""The fleet as Redis sees it: workers, dead letters, counters, lanes,
controls. Read-only; every figure comes from Redis alone (heartbeat ages on
Redis's clock), so any manager process can serve it.
"""

from __future__ import annotations

import json
from typing import Any

from bus import constants as c
from bus.keys import Keys
from bus.lanes import lane_counts
from bus.messages import Job
from bus.redis_transport import RedisClient, connect, set_retries, translated
from bus.replies import as_text
from bus.settings import RedisSettings
from manager.redaction import Redactor

HEALTHY_WITHIN_MS = 3 * c.DEFAULT_HEARTBEAT_MS
"""A worker whose last heartbeat is older than this is reported unhealthy."""

STOPPED_AFTER_MS = 300_000
"""A worker silent for this long (5 min) counts as stopped, like one that
said so: the dashboard, ``manager status`` and ``/metrics`` list it no more."""

_s = as_text


class FleetView:
    """Snapshots of the fleet from one Redis namespace."""

    def __init__(
        self,
        client: RedisClient,
        namespace: str,
        redactor: Redactor | None = None,
        healthy_within_ms: int = HEALTHY_WITHIN_MS,
    ) -> None:
        self.r = client
        self.keys = Keys(namespace)
        self.redactor = redactor or Redactor()
        self.healthy_within_ms = healthy_within_ms

    @classmethod
    def from_settings(cls, settings: RedisSettings, redactor: Redactor | None = None) -> FleetView:
        """A view with its own connections that fail fast (one quick retry):
        a status page should say "Redis unreachable" at once, not in 4 s."""
        red = redactor or Redactor(settings.secrets())
        client = connect(settings, timeout_s=5.0)
        set_retries(client, 1, base_s=0.05, cap_s=0.2)
        return cls(client, settings.namespace, red)

    def redis_time_ms(self) -> int:
        with translated():
            sec, usec = self.r.time()
        return int(sec) * 1000 + int(usec) // 1000

    def stats(self) -> dict[str, int]:
        with translated():
            raw = self.r.hgetall(self.keys.stats)
        return {_s(k): int(v) for k, v in raw.items()}

    def controls(self) -> dict[str, bool]:
        with translated():
            raw = self.r.hgetall(self.keys.control)
        vals = {_s(k): _s(v) for k, v in raw.items()}
        return {"paused": vals.get("paused") == "1", "drain": vals.get("drain") == "1"}

    def workers(self, rates: dict[str, float] | None = None) -> list[dict[str, Any]]:
        """Every registered worker with heartbeat age, health and speed."""
        with translated():
            pipe = self.r.pipeline(transaction=False)
            pipe.time()
            pipe.hgetall(self.keys.workers)
            pipe.hgetall(self.keys.workers_seen)
            (sec, usec), records, seen = pipe.execute()
        now = int(sec) * 1000 + int(usec) // 1000
        seen_ms = {_s(k): int(v) for k, v in seen.items()}
        out = []
        for wid_raw, body in records.items():
            wid = _s(wid_raw)
            out.append(self._worker(wid, body, now, seen_ms.get(wid), rates or {}))
        return sorted(out, key=lambda w: (not w["healthy"], w["worker_id"]))

    def _worker(self, wid: str, body: bytes, now: int, seen: int | None, rates: dict[str, float]) -> dict[str, Any]:
        try:
            rec = json.loads(body)
        except ValueError:
            rec = {}
        if not isinstance(rec, dict):
            rec = {}
        age_ms = now - seen if seen is not None else None
        healthy = age_ms is not None and age_ms <= self.healthy_within_ms and rec.get("state") != "stopped"
        if healthy:
            status = "active"
        elif rec.get("state") == "stopped" or age_ms is None or age_ms > STOPPED_AFTER_MS:
            status = "stopped"
        else:
            status = "silent"
        reported = rec.get("rows_per_s")
        return self.redactor.scrub(
            {
                "worker_id": wid,
                "host": str(rec.get("host", "?")),
                "pid": rec.get("pid") if isinstance(rec.get("pid"), int) else None,
                "kind": str(rec.get("kind", "?")),
                "device": str(rec.get("device", "?")),
                "version": str(rec.get("version", "?")),
                "lanes": [str(x) for x in rec.get("lanes", [])] if isinstance(rec.get("lanes"), list) else [],
                "state": str(rec.get("state", "?")),
                "current_job": rec.get("current_job") if isinstance(rec.get("current_job"), str) else None,
                "jobs_done": int(rec.get("jobs_done", 0) or 0),
                "rows_done": int(rec.get("rows_done", 0) or 0),
                "rows_per_s": float(reported) if isinstance(reported, int | float) else 0.0,
                "rows_per_s_observed": float(rates.get(wid, 0.0)),
                "heartbeat_age_s": round(age_ms / 1000, 1) if age_ms is not None else None,
                "healthy": healthy,
                "status": status,
            }
        )

    def failed(self, limit: int = 100) -> list[dict[str, Any]]:
        """The most recent dead letters (newest first) with their reasons."""
        with translated():
            entries: list[Any] = self.r.xrevrange(self.keys.dead, count=limit)  # type: ignore[assignment]
        return [self._dead_letter(_s(eid), fields) for eid, fields in entries]

    def failed_count(self) -> int:
        with translated():
            return int(self.r.xlen(self.keys.dead))

    def _dead_letter(self, entry_id: str, fields: dict[Any, Any]) -> dict[str, Any]:
        f = {_s(k): _s(v) for k, v in fields.items()}
        job_id, path, lane = None, None, None
        try:
            job = Job.from_json(f.get(c.JOB_FIELD, ""))
            job_id, path, lane = job.id, job.path, job.lane
        except Exception:  # an unreadable message was dead-lettered as is
            path = f.get(c.JOB_FIELD, "")[:200]
        try:
            attempts = int(f.get("attempts", "0"))
        except ValueError:
            attempts = 0
        return self.redactor.scrub(
            {
                "entry_id": entry_id,
                "ts_ms": int(entry_id.split("-")[0]),
                "job_id": job_id,
                "path": path,
                "lane": lane,
                "reason": f.get("reason", ""),
                "attempts": attempts,
                "worker": f.get("worker", ""),
            }
        )

    def lanes(self) -> list[dict[str, Any]]:
        """Per lane: entries waiting, in flight, and retries waiting."""
        with translated():
            names = sorted(_s(x) for x in self.r.smembers(self.keys.lanes))
            out = []
            for lane in names:
                n = lane_counts(self.r, self.keys, lane)
                out.append({"lane": lane, "waiting": n.waiting, "in_flight": n.in_flight, "delayed": n.delayed})
        return out
