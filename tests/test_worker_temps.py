"""The workers' temporary output files: created only when rows are written,
named ``.<name>.<worker>.<job8>.<random>.tmp``, removed by the worker that
owns the name when it starts again, and by the worker that takes a job over
(its last owner died writing it). The Rust twin has the same tests in
``rust/worker/src/output.rs``."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bus.memory import MemoryTransport
from workers.embedder import HashEmbedder
from workers.paths import DataRoots
from workers.pipeline import EmbedPipeline
from workers.runtime import Worker, WorkerConfig
from workers.temps import TempFiles, parse_temp, remove_job_temps, remove_worker_temps, temp_path
from workers.testing import enqueue_all, jobs_for, memory_backlog
from workers.writer import OutputWriter, Provenance

MODEL = "all-MiniLM-L6-v2@test"


def hidden(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.startswith(".")) if d.is_dir() else []


def test_names_carry_the_worker_and_the_job_and_parse_back() -> None:
    tmp = temp_path(Path("/o/embeddings/s/x.rows-0-5.parquet"), "python host.1", "0123abcdffff")
    assert tmp.name.startswith(".x.rows-0-5.parquet.python_host_1.0123abcd.") and tmp.name.endswith(".tmp")
    t = parse_temp(tmp.name)
    assert t is not None and (t.final, t.worker, t.job8) == ("x.rows-0-5.parquet", "python_host_1", "0123abcd")
    old = parse_temp(".x.parquet.w-1.89abcdef.tmp")
    assert old is not None and (old.worker, old.job8) == ("w-1", None)
    for other in ("x.parquet", ".x.parquet", ".hidden.tmp", ".x.parquet.w.zz.tmp"):
        assert parse_temp(other) is None, other


def test_the_temporary_exists_only_from_the_first_rows_to_the_rename(tmp_path: Path) -> None:
    final = tmp_path / "sub" / "a.parquet"
    with OutputWriter(final, "w1", None, "0123abcd") as w:
        assert not final.parent.exists(), "nothing is created before rows are written"
    with OutputWriter(final, "w1", None, "0123abcd") as w:
        w.write(np.array([0]), None, np.full((1, 384), 0.05, np.float32))
        assert hidden(final.parent) == [w.tmp.name]
    assert hidden(final.parent) == [], "an aborted writer removes its temporary"
    with OutputWriter(final, "w1", None, "0123abcd") as w:
        w.commit({})  # an output without rows is still written
    assert final.is_file() and pq.read_table(final).num_rows == 0 and hidden(final.parent) == []


def test_stale_temporaries_go_by_job_or_by_worker_and_no_other(tmp_path: Path) -> None:
    d = tmp_path / "embeddings" / "s1" / "cats"
    d.mkdir(parents=True)
    names = [".a.parquet.w1.0123abcd.00000001.tmp", ".a.parquet.w2.0123abcd.00000002.tmp",
             ".a.parquet.w2.99999999.00000003.tmp", ".b.parquet.w1.77777777.00000004.tmp",
             ".b.parquet.w1.00000005.tmp", ".b.parquet.xw1.77777777.00000006.tmp", ".notes"]  # fmt: skip
    for n in names:
        (d / n).write_bytes(b"")
    assert remove_job_temps(d / "a.parquet", "0123abcd5555") == 2
    assert remove_worker_temps(tmp_path, "w1") == 2
    assert hidden(d) == [".a.parquet.w2.99999999.00000003.tmp", ".b.parquet.xw1.77777777.00000006.tmp", ".notes"]


def make_input(roots: DataRoots, rel: str) -> Path:
    path = roots.input_root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"text": ["one", "two"]}), path)
    return path


def worker(bus: MemoryTransport, roots: DataRoots, worker_id: str) -> Worker:
    prov = Provenance(worker_id, "python", "cpu", "fp32", "0")
    cfg = WorkerConfig(worker_id=worker_id, burst=True, handle_signals=False, block_ms=20, controls_every_s=0.02)
    pipeline = EmbedPipeline(roots, HashEmbedder(MODEL), prov)
    return Worker(bus, pipeline, cfg, backlog=memory_backlog(bus), temps=TempFiles(roots, worker_id))


def test_a_worker_removes_its_own_stale_temporaries_when_it_starts(tmp_path: Path) -> None:
    roots = DataRoots.create(tmp_path / "in", tmp_path / "out")
    d = roots.output_root / "embeddings" / "2024-01" / "sub"
    d.mkdir(parents=True)
    (d / ".f.parquet.python-w1.0123abcd.00000001.tmp").write_bytes(b"")
    (d / ".f.parquet.python-w2.0123abcd.00000002.tmp").write_bytes(b"")
    assert worker(MemoryTransport(), roots, "python-w1").run() == 0
    assert hidden(d) == [".f.parquet.python-w2.0123abcd.00000002.tmp"]


def test_a_job_taken_over_loses_the_temporaries_of_its_earlier_attempts(tmp_path: Path) -> None:
    roots = DataRoots.create(tmp_path / "in", tmp_path / "out")
    path = make_input(roots, "chains/2024-01/sub/f.parquet")
    [job] = jobs_for(roots.input_root, [path], MODEL)
    bus = MemoryTransport(lease_ms=50)
    assert enqueue_all(bus, [job]) == 1
    # The first owner claims the job and dies writing it: its temporary stays.
    first = bus.claim("python-dead", ["default"], 0)
    assert first is not None
    out = roots.output(job.out)
    out.parent.mkdir(parents=True)
    stale = temp_path(out, "python-dead", job.id)
    stale.write_bytes(b"PAR1 half")
    threading.Event().wait(0.1)  # past the lease
    assert worker(bus, roots, "python-w2").run() == 0
    assert bus.state[job.id] == "d"
    assert out.is_file() and hidden(out.parent) == []


def test_a_first_delivery_leaves_other_temporaries_alone(tmp_path: Path) -> None:
    """A job enqueued twice behind the scripts' back runs twice at once: the
    second must not delete the first's live temporary."""
    roots = DataRoots.create(tmp_path / "in", tmp_path / "out")
    path = make_input(roots, "chains/2024-01/sub/g.parquet")
    [job] = jobs_for(roots.input_root, [path], MODEL)
    bus = MemoryTransport()
    enqueue_all(bus, [job])
    out = roots.output(job.out)
    out.parent.mkdir(parents=True)
    live = temp_path(out, "python-other", job.id)
    live.write_bytes(b"being written")
    assert worker(bus, roots, "python-w3").run() == 0
    assert live.exists()
