"""A total-queue checker in the manner of Jepsen's (``jepsen.checker/total-queue``).

Jepsen compares what was enqueued with what was dequeued: a value enqueued
but never dequeued is *lost*, one dequeued more than once is *duplicated*,
one dequeued but never enqueued is *unexpected*. Here the history is:

- the harness's log of enqueues (every job it handed to the bus);
- the completions the bus *counted*, one per ``job_done`` / ``job_skipped``
  event a worker published after ``complete.lua`` said it counted the job;
- the final state read from Redis: the ``state`` hash, the ``stats``
  counters, the dead-letter stream and what is still pending or delayed.

A job is *lost* when it was enqueued and neither ended ``done`` (nor
dead-lettered on purpose, like a poison job), and *double-counted* when the
bus counted it more than once: by its events, or because the ``done``
counter exceeds the number of jobs in state ``done``. The event stream is
capped and a Redis crash may drop its tail, so events can only ever *under*
count; the counters are the cross-check.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis

from bus import constants as c
from bus.errors import EmbedfleetError
from bus.keys import Keys
from bus.messages import Job

COUNTED_EVENTS = ("job_done", "job_skipped")


@dataclass(frozen=True)
class BusSnapshot:
    """Everything the checker reads from Redis at the end of a run."""

    state: dict[str, str]
    stats: dict[str, int]
    dead: list[dict[str, str]]
    events: list[dict[str, Any]]
    pending: int
    delayed: int

    @property
    def done(self) -> set[str]:
        return {j for j, s in self.state.items() if s == c.STATE_DONE}

    @property
    def dead_ids(self) -> list[str]:
        """Job id of every dead letter, one per entry (so repeats show)."""
        out = []
        for d in self.dead:
            raw = d.get("job", "{}")
            try:
                out.append(Job.from_json(raw).id)
            except EmbedfleetError:  # not a valid job message: its own id field, if any
                try:
                    out.append(str(json.loads(raw).get("id", "?")))
                except (ValueError, AttributeError):
                    out.append("?")
        return out


def _s(v: object) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def entries(client: redis.Redis, stream: str) -> list[dict[str, str]]:
    """Every entry of a stream, fields decoded."""
    raw: Any = client.xrange(stream)
    return [{_s(a): _s(b) for a, b in (fields or {}).items()} for _id, fields in raw or []]


def read_snapshot(client: redis.Redis, namespace: str, lanes: Iterable[str] = (c.DEFAULT_LANE,)) -> BusSnapshot:
    """Read the final state of one namespace (with the run quiet)."""
    k = Keys(namespace)
    raw_state: Any = client.hgetall(k.state)
    raw_stats: Any = client.hgetall(k.stats)
    state = {_s(a): _s(b) for a, b in raw_state.items()}
    stats = {_s(a): int(b) for a, b in raw_stats.items()}
    dead = entries(client, k.dead)
    events = []
    for f in entries(client, k.events):
        try:
            events.append(json.loads(f.get("event", "{}")))
        except ValueError:
            events.append({"type": "unreadable"})
    pending = delayed = 0
    for lane in lanes:
        if client.exists(k.queue(lane)):
            try:
                pending += int(client.xpending(k.queue(lane), c.GROUP)["pending"])
            except redis.exceptions.ResponseError:
                pass
        delayed += int(client.zcard(k.delayed(lane)))
    return BusSnapshot(state, stats, dead, events, pending, delayed)


@dataclass
class QueueReport:
    """The verdict, with every offending job id, so a failure says which."""

    enqueued: int
    completed: int
    lost: list[str] = field(default_factory=list)
    double_counted: dict[str, int] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)
    wrongly_dead: list[str] = field(default_factory=list)
    missing_dead: list[str] = field(default_factory=list)
    counter_excess: int = 0
    still_pending: int = 0
    still_delayed: int = 0

    @property
    def n_lost(self) -> int:
        return len(self.lost) + len(self.wrongly_dead) + len(self.missing_dead)

    @property
    def n_double_counted(self) -> int:
        return sum(n - 1 for n in self.double_counted.values()) + self.counter_excess

    @property
    def ok(self) -> bool:
        return (
            self.n_lost == 0
            and self.n_double_counted == 0
            and not self.unexpected
            and self.still_pending == 0
            and self.still_delayed == 0
        )

    def summary(self) -> str:
        return (
            f"enqueued={self.enqueued} completed={self.completed} lost={self.n_lost} "
            f"double_counted={self.n_double_counted} unexpected={len(self.unexpected)} dead={len(self.dead)} "
            f"pending={self.still_pending} delayed={self.still_delayed}; lost ids {self.lost[:5]} "
            f"wrongly dead {self.wrongly_dead[:5]} missing dead {self.missing_dead[:5]} "
            f"double {dict(list(self.double_counted.items())[:5])} counter excess {self.counter_excess} "
            f"unexpected {self.unexpected[:5]}"
        )


def counted_completions(events: Iterable[dict[str, Any]]) -> Counter[str]:
    """How often the bus counted each job, by the workers' events.

    Copies of one event (the same ``eid``: an XADD resent after its reply was
    lost) are one event, as the coordinator journals them once."""
    seen: set[tuple[str, str]] = set()
    counts: Counter[str] = Counter()
    for i, e in enumerate(events):
        if e.get("type") not in COUNTED_EVENTS:
            continue
        job = str(e.get("job"))
        key = (job, str(e.get("eid") or f"no-eid-{i}"))
        if key not in seen:
            seen.add(key)
            counts[job] += 1
    return counts


def check_queue(enqueued: Iterable[str], snap: BusSnapshot, expected_dead: Iterable[str] = ()) -> QueueReport:
    """Compare the enqueue log with the final bus state (see module doc)."""
    wanted = set(enqueued)
    poison = set(expected_dead)
    done = snap.done
    dead_ids = snap.dead_ids
    dead = set(dead_ids)
    counts = counted_completions(snap.events)
    report = QueueReport(enqueued=len(wanted), completed=len(done & wanted))
    report.lost = sorted(wanted - poison - done - dead)
    report.wrongly_dead = sorted((dead - poison) & wanted)
    report.missing_dead = sorted(poison - dead)
    report.dead = sorted(dead)
    report.double_counted = {j: n for j, n in sorted(counts.items()) if n > 1}
    dead_twice = {j: n for j, n in Counter(dead_ids).items() if n > 1}
    report.double_counted.update(dead_twice)
    n_dead_state = sum(1 for s in snap.state.values() if s == c.STATE_DEAD)
    report.counter_excess = max(0, snap.stats.get("done", 0) - len(done))
    report.counter_excess += max(0, snap.stats.get("dead", 0) - n_dead_state)
    known = set(snap.state) | set(counts) | dead
    report.unexpected = sorted(known - wanted)
    report.still_pending = snap.pending
    report.still_delayed = snap.delayed
    return report
