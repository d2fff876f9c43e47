# Twin: rust/worker/src/keeper.rs (docs/parity.md)
"""Keep the leases of the jobs a worker holds alive.

A background thread renews every held delivery each ``lease / 3`` (the
running job and the prefetched one). When ``renew`` says another consumer
owns an entry now, the delivery is marked lost and the worker abandons it.
While Redis is away renewals fail and are tried again on the next round; the
ownership check at completion decides in the end.
"""

from __future__ import annotations

import logging
import threading

from bus.errors import EmbedfleetError, LeaseLost
from bus.transport import Delivery, Transport

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews held deliveries from a daemon thread."""

    def __init__(self, transport: Transport, consumer: str, lease_ms: int) -> None:
        self.transport = transport
        self.consumer = consumer
        self.interval_s = max(0.01, lease_ms / 3000)
        self._held: dict[str, Delivery] = {}
        self._lost: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lease", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def hold(self, d: Delivery) -> None:
        with self._lock:
            self._held[d.entry_id] = d
            self._lost.discard(d.entry_id)

    def release(self, d: Delivery) -> None:
        with self._lock:
            self._held.pop(d.entry_id, None)
            self._lost.discard(d.entry_id)

    def lost(self, d: Delivery) -> bool:
        with self._lock:
            return d.entry_id in self._lost

    def check(self, d: Delivery) -> None:
        """Raise ``LeaseLost`` if another worker owns the delivery now."""
        if self.lost(d):
            raise LeaseLost(f"{d.job.path}: lease lost to another worker")

    def renew_all(self) -> None:
        with self._lock:
            held = [d for eid, d in self._held.items() if eid not in self._lost]
        for d in held:
            try:
                ok = self.transport.renew(self.consumer, d)
            except EmbedfleetError as e:
                log.warning("cannot renew the lease of %s: %s", d.job.path, e)
                continue
            if not ok:
                log.warning("lease of %s lost to another worker", d.job.path)
                with self._lock:
                    if d.entry_id in self._held:
                        self._lost.add(d.entry_id)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.renew_all()
