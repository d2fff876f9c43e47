"""The checker itself: it must see every kind of anomaly it claims to report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.fault.checker import BusSnapshot, check_queue
from tests.fault.outputs import check_outputs

pytestmark = pytest.mark.fault


def snap(state: dict[str, str], events: list[dict[str, Any]] | None = None, dead: list[str] = (),  # type: ignore[assignment]
         stats: dict[str, int] | None = None, pending: int = 0) -> BusSnapshot:  # fmt: skip
    done = sum(1 for s in state.values() if s == "d")
    n_dead = sum(1 for s in state.values() if s == "x")
    return BusSnapshot(
        state=state,
        stats=stats if stats is not None else {"done": done, "dead": n_dead},
        dead=[{"job": json.dumps({"id": j}), "reason": "r", "attempts": "3"} for j in dead],
        events=events if events is not None else [{"type": "job_done", "job": j} for j, s in state.items() if s == "d"],
        pending=pending,
        delayed=0,
    )


def test_a_clean_run_reports_nothing() -> None:
    r = check_queue(["a", "b"], snap({"a": "d", "b": "d"}))
    assert r.ok and r.n_lost == 0 and r.n_double_counted == 0 and r.completed == 2


def test_a_job_never_done_is_lost() -> None:
    r = check_queue(["a", "b", "c"], snap({"a": "d", "b": "q"}))
    assert r.lost == ["b", "c"] and r.n_lost == 2 and not r.ok


def test_a_job_counted_by_two_events_is_double_counted() -> None:
    events = [{"type": "job_done", "job": "a"}, {"type": "job_skipped", "job": "a"}, {"type": "lease_lost", "job": "a"}]
    r = check_queue(["a"], snap({"a": "d"}, events=events))
    assert r.double_counted == {"a": 2} and r.n_double_counted == 1 and not r.ok


def test_a_resent_copy_of_one_event_is_one_count_but_two_events_with_own_ids_are_two() -> None:
    resent = [{"type": "job_done", "job": "a", "eid": "e1"}, {"type": "job_done", "job": "a", "eid": "e1"}]
    assert check_queue(["a"], snap({"a": "d"}, events=resent)).ok
    twice = [{"type": "job_done", "job": "a", "eid": "e1"}, {"type": "job_done", "job": "a", "eid": "e2"}]
    r = check_queue(["a"], snap({"a": "d"}, events=twice))
    assert r.double_counted == {"a": 2} and not r.ok


def test_a_done_counter_above_the_done_jobs_is_double_counting() -> None:
    r = check_queue(["a", "b"], snap({"a": "d", "b": "d"}, stats={"done": 3}))
    assert r.counter_excess == 1 and r.n_double_counted == 1 and not r.ok


def test_a_job_never_enqueued_is_unexpected() -> None:
    r = check_queue(["a"], snap({"a": "d", "zz": "d"}))
    assert r.unexpected == ["zz"] and not r.ok


def test_poison_must_be_dead_once_and_nothing_else_dead() -> None:
    ok = check_queue(["a", "p"], snap({"a": "d", "p": "x"}, dead=["p"]), expected_dead=["p"])
    assert ok.ok and ok.dead == ["p"]
    missing = check_queue(["a", "p"], snap({"a": "d", "p": "q"}), expected_dead=["p"])
    assert missing.missing_dead == ["p"] and not missing.ok
    wrong = check_queue(["a", "p"], snap({"a": "x", "p": "x"}, dead=["a", "p"]), expected_dead=["p"])
    assert wrong.wrongly_dead == ["a"] and not wrong.ok
    twice = check_queue(["p"], snap({"p": "x"}, dead=["p", "p"]), expected_dead=["p"])
    assert twice.double_counted == {"p": 2} and not twice.ok


def test_work_left_pending_fails_the_run() -> None:
    assert not check_queue(["a"], snap({"a": "d"}, pending=1)).ok


def write_output(path: Path, rows: list[int], emb: np.ndarray, job: str = "j") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({
        "row": pa.array(rows, pa.int64()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1), pa.float32()), emb.shape[1]),
    }).replace_schema_metadata({"embedfleet.job_id": job, "embedfleet.worker_id": str(path)})  # fmt: skip
    pq.write_table(table, path)


def test_outputs_equal_to_the_reference_pass_whatever_worker_wrote_them(tmp_path: Path) -> None:
    emb = np.eye(2, 4, dtype=np.float32)
    write_output(tmp_path / "ref/embeddings/a.parquet", [0, 1], emb)
    write_output(tmp_path / "run/embeddings/a.parquet", [0, 1], emb + 1e-7)
    (tmp_path / "run/embeddings/.a.parquet.w1.ab12.tmp").write_bytes(b"torn")
    r = check_outputs(tmp_path / "run", ["embeddings/a.parquet"], tmp_path / "ref", tol=1e-5)
    assert r.ok, r.summary()
    assert r.stale_temps == ["embeddings/.a.parquet.w1.ab12.tmp"]


def test_outputs_missing_extra_torn_or_different_are_reported(tmp_path: Path) -> None:
    emb = np.eye(2, 4, dtype=np.float32)
    for name in ("a", "b", "c"):
        write_output(tmp_path / f"ref/embeddings/{name}.parquet", [0, 1], emb)
    write_output(tmp_path / "run/embeddings/a.parquet", [0, 1], emb * 0.5)
    (tmp_path / "run/embeddings/b.parquet").write_bytes(b"PAR1 torn")
    write_output(tmp_path / "run/embeddings/stray.parquet", [0], emb[:1])
    (tmp_path / "run/embeddings/.b.parquet").write_bytes(b"hidden but not a temporary")
    want = ["embeddings/a.parquet", "embeddings/b.parquet", "embeddings/c.parquet"]
    r = check_outputs(tmp_path / "run", want, tmp_path / "ref", tol=1e-5)
    assert r.missing == ["embeddings/c.parquet"]
    assert r.unexpected == ["embeddings/stray.parquet"]
    assert [u.split(":")[0] for u in r.unreadable] == ["embeddings/b.parquet"]
    assert len(r.mismatched) == 1 and "embeddings differ" in r.mismatched[0]
    assert r.odd_hidden == ["embeddings/.b.parquet"]
    assert not r.ok
