"""A bus with something to show, for the status API and status view tests."""

from __future__ import annotations

from bus.messages import Job
from bus.redis_transport import RedisTransport
from bus.transport import WorkerRecord
from tests.support.fakes import make_jobs

TOKEN = "tok-3f9a2c1e8b7d4a6f"
"""The API token of the guarded test servers."""


def populate(transport: RedisTransport) -> Job:
    """One healthy worker, one job done, one dead-lettered with a reason."""
    good, bad = make_jobs(2)
    transport.ensure_lanes(["default"])
    transport.heartbeat(WorkerRecord("w-1", "hostA", 42, "rust", "cpu", "0.1.0", ["default"], rows_per_s=12.5))
    for job in (good, bad):
        transport.enqueue(job)
    d = transport.claim("w-1", ["default"], 0)
    assert d is not None and d.job.id == good.id
    transport.complete("w-1", d, 10)
    d = transport.claim("w-1", ["default"], 0)
    assert d is not None
    transport.dead_letter("w-1", d, f"{bad.path}: missing column 'text'", "w-1")
    return bad
