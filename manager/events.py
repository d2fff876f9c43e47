"""The event pump: the workers' events stream (``<ns>:events``) into the
run's journal and figures.

Workers publish what happens to their jobs (``job_done``, ``job_dead``,
``worker_started``, ...) on a capped stream; the manager is the one writer of
``events.jsonl``. The pump reads the stream from where it stopped, drops a
resent copy of an event already journaled (same ``eid``), journals each
event with the stream entry it came from, and counts it into the run's
figures. Its position only moves once an event is journaled, so a full disk
leaves the rest to be read again. A resumed run replays its journal through
``apply`` and goes on from the last entry journaled (``manager.resume``).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from bus import constants as c
from bus.keys import Keys
from bus.messages import SeenEventIds
from bus.redis_transport import RedisClient, translated
from bus.replies import as_text
from manager.figures import RunFigures
from manager.fleet import FleetView
from manager.journal import Journal
from manager.redaction import Redactor
from manager.throughput import device_class
from manager.usage import job_usage

log = logging.getLogger("embedfleet.manager")

_LEVELS = {"job_dead": "error", "job_retry": "warning", "lease_lost": "warning"}
_EVENT_FIELDS = (
    "v",
    "worker",
    "kind",
    "job",
    "path",
    "rows",
    "seconds",
    "counts",
    "ts_ms",
    "eid",
    "action",
    "detail",
    "source",
)
_REGISTRY_STALE_S = 1.0
"""A worker unknown to the device cache re-reads the registry at most this often."""


class EventPump:
    """Reads the events stream into the journal and the run's figures."""

    def __init__(
        self,
        client: RedisClient,
        keys: Keys,
        journal: Journal,
        figures: RunFigures,
        fleet: FleetView,
        redactor: Redactor,
        events_from: str,
    ) -> None:
        self.client = client
        self.keys = keys
        self.journal = journal
        self.figures = figures
        self.fleet = fleet
        self.redactor = redactor
        self.events_from = events_from
        """The last stream entry journaled (``<ms>-<seq>``): reading goes on after it."""
        self.events_seen: set[str] = set()
        """Jobs of which a done, skipped or dead event was journaled."""
        self._eids = SeenEventIds()
        self._devices: dict[str, tuple[str, str]] = {}
        self._last_registry = 0.0

    # -- reading the stream ----------------------------------------------
    def pump(self, block_ms: int) -> int:
        """Journal the workers' events that arrived (waits at most ``block_ms``)."""
        with translated():
            resp: Any = self.client.xread({self.keys.events: self.events_from}, count=500, block=max(1, block_ms))
        n = 0
        for _stream, entries in resp or []:
            for eid, fields in entries:
                entry = as_text(eid)
                self.on_event(entry, fields.get(b"event") or fields.get("event"))
                self.events_from = entry  # only once journaled: a full disk leaves it to be read again
                n += 1
        return n

    def drain(self, grace_s: float = 1.0) -> None:
        """Journal the events still in flight when the last job finished.

        A worker marks its job done and then publishes the event, so the last
        events may arrive just after the state says the run is over."""
        deadline = time.monotonic() + grace_s
        tracker = self.figures.tracker
        while time.monotonic() < deadline:
            missing = tracker.done.union(tracker.dead) - tracker.already_done - self.events_seen
            if self.pump(50) == 0 and not missing:
                return

    # -- one event ---------------------------------------------------------
    def on_event(self, entry_id: str, raw: bytes | str | None) -> None:
        """Journal one worker event and update the run's figures."""
        t = time.thread_time()
        try:
            ev = json.loads(raw or b"")
            if not isinstance(ev, dict):
                raise ValueError("not an object")
        except ValueError:
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            self.journal.write(
                "worker_event_invalid",
                "unreadable worker event",
                level="warning",
                data={"entry": entry_id, "raw": text[:500]},
            )
            return
        if not self._eids.first_time(ev.get("eid")):
            self.figures.counters.resent_events += 1
            log.info("dropped a resent copy of event %s (stream entry %s)", ev.get("eid"), entry_id)
            return
        etype = str(ev.get("type") or "unknown")
        worker = str(ev.get("worker") or "?")
        job = ev.get("job") if isinstance(ev.get("job"), str) else None
        data = {k: ev[k] for k in _EVENT_FIELDS if k in ev}
        data.setdefault("source", "worker")
        data["entry"] = entry_id
        if etype == "job_done":  # kept, so that a resumed run replays it into the same class
            data["class"] = device_class(*self.device_of(worker, str(ev.get("kind") or "?")))
        usage = job_usage(ev, time.thread_time() - t) if job else {}
        error = ev.get("error")
        self.journal.write(
            etype,
            f"{worker}: {etype} {ev.get('path') or ''}".rstrip(),
            level=_LEVELS.get(etype, "info"),
            counters=_event_counters(etype, ev),
            usage=usage,
            error=str(error) if error else None,
            data=data,
        )
        self.apply(etype, worker, job, ev, data.get("class"))
        self.figures.counters.event_cpu_s += time.thread_time() - t

    def apply(
        self,
        etype: str,
        worker: str,
        job: str | None,
        ev: dict[str, Any],
        klass: str | None,
        end_s: float | None = None,
    ) -> None:
        """Count one journaled worker event into the run's figures (also when
        a resumed run replays its journal: ``end_s`` is then when it was journaled)."""
        f = self.figures
        f.counters.events += 1
        if job:
            f.counters.job_events += 1
            if etype in ("job_done", "job_skipped", "job_dead"):
                self.events_seen.add(job)
        if etype == "job_done":
            rows = _count(ev.get("rows"))
            f.counters.rows += rows
            raw_counts = ev.get("counts")
            counts: dict[str, Any] = raw_counts if isinstance(raw_counts, dict) else {}
            f.counters.model_calls += _count(counts.get("model_calls"))
            f.counters.rows_reused += _count(counts.get("rows_reused"))
            klass = klass or device_class(*self.device_of(worker, str(ev.get("kind") or "?")))
            f.throughput.add(worker, klass, rows, seconds=_seconds(ev.get("seconds")), end_s=end_s)
            if job:
                f.tracker.mark(job, c.STATE_DONE)
        elif etype == "job_skipped":
            f.counters.skipped_by_workers += 1
            if job:
                f.tracker.mark(job, c.STATE_DONE)
        elif etype == "job_dead":
            if job:
                f.tracker.mark(job, c.STATE_DEAD)
            error = ev.get("error")
            f.failures.add("worker", self.redactor.text(str(error)) if error is not None else None)
        elif etype in ("worker_started", "worker_stopped"):
            self._last_registry = 0.0

    def first_time(self, eid: Any) -> bool:
        """Whether an event id is new (and remember it): a replayed journal
        line marks its event as journaled."""
        return self._eids.first_time(eid)

    # -- the workers' devices ----------------------------------------------
    def device_of(self, worker: str, kind: str) -> tuple[str, str]:
        """(kind, device) of a worker, from the registry (cached)."""
        if worker not in self._devices and time.monotonic() - self._last_registry > _REGISTRY_STALE_S:
            self.refresh_registry()
        return self._devices.get(worker, (kind, "?"))

    def refresh_registry(self) -> list[dict[str, Any]]:
        """Re-read the worker registry (and the device of each worker)."""
        self._last_registry = time.monotonic()
        workers = self.fleet.workers()
        for w in workers:
            self._devices[w["worker_id"]] = (w["kind"], w["device"])
        return workers

    # -- a resumed run -------------------------------------------------------
    def resume_after(self, entry: str | None, fallback: str | None) -> None:
        """Go on reading after the last stream entry the journal holds
        (``entry``; else ``fallback``, the dead manager's position), journal
        where, and warn when the stream was trimmed past it."""
        self.events_from = entry or (str(fallback) if fallback else self.events_from)
        events = self.figures.counters.events
        self.journal.write(
            "journal_replayed",
            f"{events} worker events replayed; reading events after stream entry {self.events_from}",
            data={"events_from": self.events_from, "events": events},
        )
        self._note_gap()

    def _note_gap(self) -> None:
        """Journal a warning when the events stream no longer holds every entry
        after the last one journaled (trimmed while no manager read it)."""
        try:
            with translated():
                info: Any = self.client.xinfo_stream(self.keys.events)
        except Exception:  # no stream yet (no event ever), or Redis away: nothing to compare
            return
        gone = info.get("max-deleted-entry-id")  # Redis 7+; 6.2 cannot tell
        if gone is not None and stream_id_key(as_text(gone)) > stream_id_key(self.events_from):
            self.journal.write(
                "events_missed",
                f"the events stream was trimmed past the last journaled entry {self.events_from} "
                f"(up to {as_text(gone)}): events in between are not in the journal",
                level="warning",
                data={"events_from": self.events_from, "trimmed_to": as_text(gone)},
            )


def stream_id_key(entry: str) -> tuple[int, int]:
    """A Redis stream id as a sortable pair."""
    ms, _, seq = entry.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return 0, 0


def _seconds(value: Any) -> float | None:
    """A job's ``seconds`` from an event, None when absent or not a number."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


def _count(value: Any) -> int:
    """A non-negative count from an event field, 0 for anything else."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _event_counters(etype: str, ev: dict[str, Any]) -> dict[str, int]:
    """The journal line's counter deltas of one worker event."""
    if etype == "job_done":
        return {"jobs_done": 1, "rows": _count(ev.get("rows"))}
    return {
        "job_skipped": {"jobs_skipped": 1},
        "job_dead": {"jobs_dead": 1},
        "job_retry": {"retries": 1},
        "lease_lost": {"leases_lost": 1},
    }.get(etype, {})
