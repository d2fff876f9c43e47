"""The bus watcher: the embedding stage, watched from the bus until every job
of the plan is done or dead (or cluster-now, or a stop).

Each bookkeeping pass pumps the workers' events (``manager.events``), and on
its own clock re-reads every unfinished job's state, puts back the jobs whose
state Redis lost (reconcile), trims acknowledged stream entries from every
lane, re-reads the worker registry, journals pause/drain changes and
publishes the run status. A Redis outage is waited out (up to
``bus_timeout_s``) and followed by a reconcile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from bus.errors import BusUnavailable
from bus.redis_transport import RedisClient, RedisTransport, translated
from bus.settings import RedisSettings
from manager import scan
from manager.events import EventPump
from manager.figures import RunFigures
from manager.fleet import FleetView
from manager.journal import Journal
from manager.state import Interrupted

log = logging.getLogger("embedfleet.manager")


@dataclass(frozen=True)
class WatchTimes:
    """How often the watcher does what (``CoordinatorOptions`` gives them)."""

    poll_s: float
    """Longest wait for worker events between bookkeeping passes."""
    refresh_s: float
    """How often every unfinished job's state is re-read from Redis."""
    trim_every_s: float
    state_every_s: float
    registry_every_s: float
    bus_timeout_s: float
    """A Redis outage longer than this ends the run in ``error``."""


class _Clock:
    """When each periodic task last ran."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}

    def due(self, name: str, every_s: float, now: float) -> bool:
        if now - self.last.get(name, -1e18) >= every_s:
            self.last[name] = now
            return True
        return False


class BusWatcher:
    """Watches the bus through the embedding stage; see the module docstring.

    ``publish_state`` writes the run status (``state.json``);
    ``note_disk_outages`` journals the disk outages that ended."""

    def __init__(
        self,
        settings: RedisSettings,
        transport: RedisTransport,
        client: RedisClient,
        fleet: FleetView,
        journal: Journal,
        figures: RunFigures,
        pump: EventPump,
        times: WatchTimes,
        *,
        stop: threading.Event,
        cluster_now: threading.Event,
        publish_state: Callable[[], None],
        note_disk_outages: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.transport = transport
        self.client = client
        self.fleet = fleet
        self.journal = journal
        self.figures = figures
        self.pump = pump
        self.times = times
        self.stop = stop
        self.cluster_now = cluster_now
        self.publish_state = publish_state
        self.note_disk_outages = note_disk_outages
        self.controls: dict[str, bool] | None = None
        """The pause/drain controls as last read (``None`` before the first read)."""

    def watch(self) -> None:
        """Watch until every job is done or dead (or cluster-now); raises
        ``Interrupted`` on a stop, ``BusUnavailable`` after too long an outage."""
        clock = _Clock()
        outage: float | None = None
        while True:
            if self.stop.is_set():
                raise Interrupted()
            try:
                if outage is not None:
                    with translated():
                        self.client.ping()
                    self._recovered(time.monotonic() - outage)
                    outage = None
                if self._pass(clock):
                    self.pump.drain()
                    return
            except BusUnavailable as e:
                outage = self._outage(e, outage)

    def _pass(self, clock: _Clock) -> bool:
        """One bookkeeping pass; True when the embedding stage is over."""
        t, f = self.times, self.figures
        self.note_disk_outages()
        self.pump.pump(int(t.poll_s * 1000))
        now = time.monotonic()
        hinted = f.tracker.progress().finished
        finished = False
        if hinted or clock.due("refresh", t.refresh_s, now):
            self._refresh()
            p = f.tracker.progress()
            f.eta.observe(p.resolved)
            if p.lost:
                self.recover_lost()
            finished = f.tracker.progress().finished
        if clock.due("trim", t.trim_every_s, now):
            self.trim()
        if clock.due("registry", t.registry_every_s, now):
            self.pump.refresh_registry()
        if finished or clock.due("state", t.state_every_s, now):
            self.watch_controls()
            self.publish_state()
        if self.cluster_now.is_set():
            self.journal.write(
                "action", "cluster-now: ending the embedding stage early", data={"action": "cluster-now"}
            )
            return True
        return finished

    def _refresh(self) -> None:
        with translated():
            self.figures.tracker.refresh(self.client, self.transport.keys)

    def trim(self) -> int:
        """Drop acknowledged entries from every lane (never past a pending one)."""
        removed = sum(self.transport.trim(lane) for lane in self.transport.lanes())
        self.figures.counters.trimmed += removed
        if removed:
            self.journal.write(
                "trimmed",
                f"{removed} acknowledged stream entries removed",
                level="debug",
                counters={"trimmed": removed},
            )
        return removed

    def recover_lost(self) -> int:
        """Jobs whose state Redis lost (a crash): put them back on the bus."""
        tracker = self.figures.tracker
        lost = len(tracker.lost)
        n = scan.reconcile(self.settings, list(tracker.jobs.values()))
        self.journal.write(
            "reconciled",
            f"{lost} jobs had lost their state; {n} re-enqueued",
            level="warning",
            counters={"reenqueued": n},
        )
        self._refresh()
        return n

    def watch_controls(self) -> None:
        """Journal pause/drain changes, whoever made them."""
        now = self.fleet.controls()
        if self.controls is not None and now != self.controls:
            self.journal.write(
                "controls_changed", ", ".join(f"{k}={'on' if v else 'off'}" for k, v in now.items()), data=dict(now)
            )
        self.controls = now

    def _outage(self, e: BusUnavailable, since: float | None) -> float:
        now = time.monotonic()
        timeout_s = self.times.bus_timeout_s
        if since is None:
            self.journal.write("bus_unavailable", str(e), level="warning", error=str(e), sync=True)
            log.warning("Redis unavailable; waiting up to %.0f s", timeout_s)
            since = now
        if now - since > timeout_s:
            raise BusUnavailable(f"Redis unavailable for more than {timeout_s:.0f} s") from None
        time.sleep(min(2.0, max(0.2, (now - since) / 4)))
        return since

    def _recovered(self, seconds: float) -> None:
        self.journal.write("bus_recovered", f"Redis back after {seconds:.1f} s", level="warning")
        log.info("Redis back after %.1f s; reconciling", seconds)
        self.recover_lost()
