"""The compiled module ``manager._core`` itself: its result shape, progress
and interruption, threads, and the protocol vectors through the Rust enqueue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis

from bus.keys import Keys
from bus.messages import Job
from bus.settings import RedisSettings
from manager import _core
from tests.support.scan_tree import MODEL, Tree, stream_jobs

VECTORS = Path(__file__).parent / "vectors"


def vector_jobs() -> list[tuple[Job, str]]:
    out = []
    for case in json.loads((VECTORS / "jobs.json").read_text(encoding="utf-8")):
        inp = case["input"]
        rows = tuple(inp["rows"]) if inp["rows"] else None
        job = Job.create(
            inp["path"],
            inp["fingerprint"],
            inp["model"],
            rows,  # type: ignore[arg-type]
            column=inp.get("column", "text"),
            id_column=inp.get("id_column"),
            lane=inp.get("lane", "default"),
        )
        out.append((job, case["json"]))
    return out


def small_tree(tmp_path: Path, subs: int = 3, files: int = 4) -> Tree:
    tree = Tree(tmp_path)
    for s in range(subs):
        for f in range(files):
            tree.add_input(f"2024-01/sub{s}/f{f}.parquet")
    return tree


def test_the_rust_enqueue_writes_the_vector_wire_form(settings: RedisSettings, redis_client: redis.Redis) -> None:
    cases = vector_jobs()
    assert cases
    new, _ = _core.enqueue(
        [j for j, _ in cases], namespace=settings.namespace, host=settings.host, port=settings.port, db=settings.db
    )
    assert new == len({j.id for j, _ in cases})
    keys = Keys(settings.namespace)
    sent = {s for lane in {j.lane for j, _ in cases} for s in stream_jobs(redis_client, keys, lane)}
    assert sent == {wire for _, wire in cases}


def test_job_ids_match_the_vectors() -> None:
    for job, _ in vector_jobs():
        assert _core.job_id(job.path, job.rows, job.fingerprint, job.model) == job.id


def test_scan_returns_the_documented_shape(tmp_path: Path) -> None:
    tree = small_tree(tmp_path)
    raw = _core.scan(str(tree.input), str(tree.output), MODEL, rows_per_part=100)
    assert set(raw) == {"jobs", "subreddits", "orphans", "temps", "issues", "stats", "cancelled"}
    job = raw["jobs"][0]
    assert (job.rank, job.path, job.rows) == (0, "chains/2024-01/sub0/f0.parquet", None)
    assert job.id == _core.job_id(job.path, job.rows, job.fingerprint, MODEL)
    assert job.out == "embeddings/2024-01/sub0/f0.parquet"
    assert job.bytes == (tree.input / job.path).stat().st_size
    sub1 = raw["subreddits"][1]
    assert (sub1.name, sub1.files, sub1.missing, sub1.jobs, sub1.up_to_date, sub1.errors) == ("sub1", 4, 4, 4, 0, 0)
    assert sub1 == _core.SubredditScan("sub1", 4, 0, 4, 0, 0, 4, 0, 0)
    assert raw["stats"]["dirs"] == 3 and raw["stats"]["files"] == 12 and raw["cancelled"] is False


def test_progress_is_reported_and_ends_complete(tmp_path: Path) -> None:
    tree = small_tree(tmp_path)
    seen: list[tuple[int, int, int]] = []
    _core.scan(str(tree.input), str(tree.output), MODEL, rows_per_part=100, progress=lambda *a: seen.append(a))
    assert seen and seen[-1] == (3, 3, 12)
    assert all(done <= total for done, total, _ in seen)


def test_an_exception_in_progress_stops_the_scan_and_is_raised(tmp_path: Path) -> None:
    tree = small_tree(tmp_path, subs=2, files=1)

    def boom(*_: Any) -> None:
        raise KeyError("stop here")

    with pytest.raises(KeyError, match="stop here"):
        _core.scan(str(tree.input), str(tree.output), MODEL, rows_per_part=100, progress=boom)


@pytest.mark.parametrize("threads", [1, 3])
def test_the_thread_count_does_not_change_the_result(tmp_path: Path, threads: int) -> None:
    tree = small_tree(tmp_path)
    tree.add_output("2024-01/sub1/f2.parquet")
    base = _core.scan(str(tree.input), str(tree.output), MODEL, rows_per_part=100, use_cache=False)
    other = _core.scan(str(tree.input), str(tree.output), MODEL, rows_per_part=100, use_cache=False, threads=threads)
    assert other["jobs"] == base["jobs"] and other["subreddits"] == base["subreddits"]


def test_scan_without_cache_writes_nothing_under_the_output_root(tmp_path: Path) -> None:
    tree = small_tree(tmp_path, subs=1, files=1)
    tree.output.mkdir()
    raw = _core.scan(str(tree.input), str(tree.output), MODEL, rows_per_part=100, use_cache=False)
    assert raw["stats"]["cache_load"] == "disabled"
    assert list(tree.output.iterdir()) == []
