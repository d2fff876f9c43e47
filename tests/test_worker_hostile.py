"""Hostile job messages (``tests/vectors/hostile_messages.json``) against a
burst worker on a real Redis: each is dead-lettered with its reason, the good
jobs beside them are done, and the worker never waits as if Redis were away.
Also: a path the file system can never open is dead-lettered, not retried.
The Rust suite runs the same vectors (``rust/worker/tests/it/hostile.rs``)."""

from __future__ import annotations

import errno
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from bus import constants as c
from bus.errors import BadInput, InvalidMessage, PermanentError
from bus.memory import MemoryTransport
from bus.messages import Job
from bus.redis_transport import RedisTransport
from tests.support.vectors import load
from tests.vectors.generate import hostile_raw
from workers.backlog import lanes_backlog
from workers.embedder import HashEmbedder
from workers.paths import DataRoots
from workers.pipeline import EmbedPipeline
from workers.runtime import Worker, WorkerConfig
from workers.testing import enqueue_all, jobs_for, memory_backlog
from workers.writer import Provenance

MODEL = "all-MiniLM-L6-v2@test"
JOIN_S = 60
HOSTILE = load("hostile_messages.json")


def write_inputs(root: Path, n: int) -> list[Path]:
    files = []
    for i in range(n):
        path = root / f"chains/s/sub/good-{i}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"text": [f"text {i}-{r}" for r in range(4)]}), path)
        files.append(path)
    return files


def pipeline(roots: DataRoots) -> EmbedPipeline:
    return EmbedPipeline(roots, HashEmbedder(MODEL), Provenance("w", "python", "cpu", "fp32", "0"))


def run_worker(w: Worker) -> int:
    codes: list[int] = []
    th = threading.Thread(target=lambda: codes.append(w.run()), daemon=True)
    th.start()
    th.join(JOIN_S)
    assert not th.is_alive(), "the worker did not finish"
    return codes[0]


def test_every_hostile_message_is_dead_lettered_with_its_reason_at_full_speed(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    t = RedisTransport(redis_client, namespace="eftest", autoclaim_every_s=0)
    t.ensure_lanes([c.DEFAULT_LANE])
    roots = DataRoots.create(tmp_path / "in", tmp_path / "out")
    good = jobs_for(roots.input_root, write_inputs(roots.input_root, 3), MODEL)
    queue = t.keys.queue(c.DEFAULT_LANE)
    assert enqueue_all(t, good[:1]) == 1
    hostile: dict[str, dict[str, Any]] = {}  # entry id -> case
    for case in HOSTILE:
        entry_id = redis_client.xadd(queue, {case.get("field", c.JOB_FIELD): hostile_raw(case)})
        hostile[entry_id.decode()] = case
    assert enqueue_all(t, good[1:]) == 2  # good jobs on both sides of the hostile ones

    cfg = WorkerConfig(worker_id="w-hostile", burst=True, handle_signals=False, block_ms=20, controls_every_s=0.02)
    w = Worker(t, pipeline(roots), cfg, backlog=lanes_backlog(t))
    assert run_worker(w) == 0
    assert w.reconnect_waits == 0, "the worker waited as if Redis were away"

    for entry_id, case in hostile.items():
        reason = redis_client.hget(t.keys.errors, f"entry:{entry_id}")
        assert reason is not None, f"{case['name']}: not dead-lettered"
        assert reason.decode().startswith(case["reason_starts_with"]), (case["name"], reason)
        assert redis_client.hget(t.keys.state, f"entry:{entry_id}") == b"x", case["name"]
    letters = redis_client.xrange(t.keys.dead)
    assert len(letters) == len(HOSTILE)
    assert all(len(f[b"job"]) <= c.MAX_MESSAGE_BYTES for _id, f in letters), "a dead letter keeps at most 64 KiB"
    assert all(redis_client.hget(t.keys.state, j.id) == b"d" for j in good)
    stats = t.stats()
    assert (stats["done"], stats["dead"]) == (len(good), len(HOSTILE))
    assert redis_client.xpending(queue, c.GROUP)["pending"] == 0


def test_a_good_entry_handed_out_beside_a_hostile_one_comes_out_next(redis_client: redis.Redis) -> None:
    """A blocking read over two lanes may hand out an entry of each at once:
    the hostile one is dead-lettered and the good one is the next claim."""
    t = RedisTransport(redis_client, namespace="eftest", autoclaim_every_s=3600)
    t.ensure_lanes(["a", "b"])
    job = Job.create("chains/s/sub/x.parquet", "1-1", MODEL, lane="b")
    got: list[Any] = []

    def claim_blocking() -> None:
        try:
            got.append(t.claim("w1", ["a", "b"], block_ms=5000))
        except PermanentError as e:
            got.append(e)

    th = threading.Thread(target=claim_blocking, daemon=True)
    th.start()
    time.sleep(0.3)  # the claim is blocked on both lanes (if not, it reads them one by one: same outcome)
    with redis_client.pipeline(transaction=True) as p:
        p.xadd(t.keys.queue("a"), {c.JOB_FIELD: '{"v":2,"path":"/etc/passwd","fp":"1","model":"m"}'})
        p.xadd(t.keys.queue("b"), {c.JOB_FIELD: job.to_json()})
        p.execute()
    th.join(10)
    assert isinstance(got[0], InvalidMessage) and "unsafe path" in str(got[0])
    d = t.claim("w1", ["a", "b"], block_ms=0)
    assert d is not None and d.job == job
    assert redis_client.xlen(t.keys.dead) == 1


def test_a_path_the_file_system_can_never_open_is_permanent(tmp_path: Path) -> None:
    roots = DataRoots.create(tmp_path / "in", tmp_path / "out")
    # Every name fits NAME_MAX; the whole path does not fit PATH_MAX.
    rel = "chains/" + ("d" * 200 + "/") * 21 + "x.parquet"
    for look in (roots.input, roots.output):
        with pytest.raises(BadInput, match="can never be opened"):
            look(rel)


def test_a_job_whose_output_name_is_too_long_is_dead_lettered_at_once(tmp_path: Path) -> None:
    """ENAMETOOLONG anywhere in a job (here: writing the output) is no
    transient fault: the job is dead-lettered on its first attempt."""
    roots = DataRoots.create(tmp_path / "in", tmp_path / "out")
    bus = MemoryTransport()
    (f,) = write_inputs(roots.input_root, 1)

    class TooLong(EmbedPipeline):
        def run(self, prepared: Any, checkpoint: Any) -> Any:
            raise OSError(errno.ENAMETOOLONG, "File name too long", "/out/.x.parquet.w.1234.tmp")

    enqueue_all(bus, jobs_for(roots.input_root, [f], MODEL))
    handler = TooLong(roots, HashEmbedder(MODEL), Provenance("w", "python", "cpu", "fp32", "0"))
    cfg = WorkerConfig(burst=True, handle_signals=False, block_ms=20, controls_every_s=0.02)
    assert run_worker(Worker(bus, handler, cfg, backlog=memory_backlog(bus))) == 0
    assert bus.stats.get("dead") == 1 and not bus.stats.get("retried")
    assert "File name too long" in bus.dead[0]["reason"]
