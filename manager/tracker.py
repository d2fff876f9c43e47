"""Which of a run's jobs are done, dead, still to do, or lost.

The truth is the ``<ns>:state`` hash. Worker events mark jobs at once (a
hint, so progress moves without polling every job); a full pass over the
jobs not yet done confirms it, periodically and before the run may end.
Dead jobs stay under watch: ``requeue-failed`` can bring them back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bus import constants as c
from bus.keys import Keys
from bus.messages import Job
from bus.redis_transport import RedisClient
from bus.replies import as_text

_CHUNK = 2000


@dataclass(frozen=True)
class Progress:
    planned: int
    done: int
    dead: int
    pending: int
    lost: int
    already_done: int

    @property
    def resolved(self) -> int:
        return self.done + self.dead

    @property
    def finished(self) -> bool:
        return self.pending == 0 and self.lost == 0


class JobTracker:
    """Per-job state of one run's plan."""

    def __init__(self, jobs: Iterable[Job]) -> None:
        self.jobs: dict[str, Job] = {j.id: j for j in jobs}
        self.done: set[str] = set()
        self.dead: set[str] = set()
        self.lost: set[str] = set()
        self.pending: set[str] = set(self.jobs)
        self.already_done: set[str] = set()

    def mark(self, job_id: str, state: str | None) -> None:
        """Record one job's state letter (``None`` when Redis has none)."""
        if job_id not in self.jobs:
            return
        for s in (self.done, self.dead, self.lost, self.pending):
            s.discard(job_id)
        if state == c.STATE_DONE:
            self.done.add(job_id)
        elif state == c.STATE_DEAD:
            self.dead.add(job_id)
        elif state is None:
            self.lost.add(job_id)
        else:
            self.pending.add(job_id)

    def refresh(self, client: RedisClient, keys: Keys) -> None:
        """Read the state of every job not known to be done."""
        ids = [*self.pending, *self.dead, *self.lost]
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            for job_id, raw in zip(chunk, client.hmget(keys.state, chunk), strict=True):
                self.mark(job_id, None if raw is None else as_text(raw))

    def note_already_done(self) -> None:
        """Call once after the first refresh: what was done before this run."""
        self.already_done = set(self.done)

    def progress(self) -> Progress:
        return Progress(
            planned=len(self.jobs),
            done=len(self.done),
            dead=len(self.dead),
            pending=len(self.pending),
            lost=len(self.lost),
            already_done=len(self.already_done),
        )
