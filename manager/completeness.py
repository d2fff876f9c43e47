"""Is a run's journal complete? Checked against the bus.

Every job of the run's plan (``plan.jsonl``) that the bus says is done, and
was not done before the run, must have exactly one completion line
(``job_done`` or ``job_skipped``, as the worker reported it) in the journal;
and no job may have more than one, planned or not. ``verify-journal
--redis-url`` runs this after the hash-chain check.

A completion can be missing without the manager's fault: a worker killed
between counting a job (``complete.lua``) and publishing its event, or a
Redis crash that lost the event (AOF ``everysec``). The check reports them
all the same: the journal is then not a full record of the run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bus import constants as c
from bus.keys import Keys
from bus.redis_transport import connect, translated
from bus.settings import RedisSettings
from manager.resume import journal_records, read_plan

COMPLETIONS = ("job_done", "job_skipped")
_CHUNK = 2000


@dataclass
class Completeness:
    """What the check found."""

    planned: int = 0
    done: int = 0
    """Plan jobs done during the run (the ones that need a line)."""
    missing: list[str] = field(default_factory=list)
    """Done jobs with no completion line."""
    repeated: dict[str, int] = field(default_factory=dict)
    """Jobs with more than one completion line, and how many."""
    no_plan: bool = False

    @property
    def ok(self) -> bool:
        return not (self.missing or self.repeated or self.no_plan)

    def problems(self) -> list[str]:
        out = []
        if self.no_plan:
            out.append("no plan.jsonl in the run dir: cannot tell which jobs the run had")
        out += [f"job {j}: done on the bus, no job_done line in the journal" for j in self.missing]
        out += [f"job {j}: {n} completion lines in the journal" for j, n in sorted(self.repeated.items())]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "planned": self.planned,
            "done": self.done,
            "missing": self.missing,
            "repeated": self.repeated,
            "no_plan": self.no_plan,
        }


def completions(run_dir: Path) -> Counter[str]:
    """Completion lines per job id in a run's journal."""
    got: Counter[str] = Counter()
    for rec in journal_records(run_dir):
        data = rec.get("data")
        if rec.get("type") in COMPLETIONS and isinstance(data, dict) and isinstance(data.get("job"), str):
            got[data["job"]] += 1
    return got


def check(run_dir: Path, settings: RedisSettings) -> Completeness:
    """Compare a run's journal with the bus's state of its plan's jobs."""
    result = Completeness()
    lines = completions(run_dir)
    result.repeated = {j: n for j, n in lines.items() if n > 1}
    plan = read_plan(run_dir)
    if plan is None:
        result.no_plan = True
        return result
    result.planned = len(plan.jobs)
    ids = [j.id for j in plan.jobs if j.id not in plan.done_before]
    keys = Keys(settings.namespace)
    client = connect(settings, timeout_s=10.0)
    try:
        with translated():
            for i in range(0, len(ids), _CHUNK):
                chunk = ids[i : i + _CHUNK]
                states: Any = client.hmget(keys.state, chunk)
                for job_id, state in zip(chunk, states, strict=True):
                    if state is not None and (state.decode() if isinstance(state, bytes) else state) == c.STATE_DONE:
                        result.done += 1
                        if lines[job_id] == 0:
                            result.missing.append(job_id)
    finally:
        client.close()
    return result
