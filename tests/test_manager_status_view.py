"""``python -m manager status`` draws the run and the fleet in the terminal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from bus.redis_transport import RedisTransport
from bus.settings import RedisSettings
from manager import status_view
from manager.__main__ import main as manager_main
from manager.state import write_atomic
from tests.support.api import populate


def state(tmp_path: Path) -> Path:
    run = tmp_path / "runs" / "20260101T000000Z-abcdef"
    run.mkdir(parents=True)
    write_atomic(
        run / "state.json",
        {
            "run_id": "20260101T000000Z-abcdef",
            "stage": "embedding",
            "progress": 0.25,
            "eta_s": 3725,
            "jobs": {"planned": 8, "done": 1, "failed": 1, "pending": 6, "skipped": 3, "scan_errors": 1},
            "scan_errors": [{"path": "chains/2024-01/s/broken.parquet", "reason": "not a parquet file"}],
            "rows": 12345,
            "rows_per_s": 678.9,
            "throughput": {"classes": {"python/mps": 500.0, "rust/cpu": 178.9}},
        },
    )
    return run


def draw(settings: RedisSettings | None, tmp_path: Path) -> str:
    console = Console(record=True, width=200, color_system=None)
    assert status_view.main(settings, None, tmp_path, None, False, console=console) == 0
    return console.export_text()


def test_status_shows_run_workers_failures_and_lanes(
    settings: RedisSettings, transport: RedisTransport, tmp_path: Path
) -> None:
    populate(transport)
    state(tmp_path)
    text = draw(settings, tmp_path)
    for expected in (
        "20260101T000000Z-abcdef",
        "embedding",
        "2/8 jobs (25.0%)",
        "ETA 1h 2m",
        "skipped 3",
        "python/mps 500.0",
        "failed 1  scan errors 1",
        "workers (1 healthy of 1)",
        "w-1",
        "hostA",
        "rust",
        "cpu",
        "failures (1 dead-lettered, 1 scan errors)",
        "missing column 'text'",
        "chains/2024-01/s/broken.parquet",
        "default",
    ):
        assert expected in text, expected


def test_status_without_redis_still_shows_the_run(tmp_path: Path) -> None:
    state(tmp_path)
    text = draw(None, tmp_path)
    assert "embedding" in text and "no Redis URL given" in text


def test_status_without_a_run(settings: RedisSettings, transport: RedisTransport, tmp_path: Path) -> None:
    assert "no run found" in draw(settings, tmp_path)


def test_status_json_is_the_dashboard_snapshot(
    settings: RedisSettings, transport: RedisTransport, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    populate(transport)
    run = state(tmp_path)
    url = f"redis://{settings.host}:{settings.port}/0"
    assert manager_main(["status", "--redis-url", url, "--namespace", "eftest", "--run-dir", str(run), "--json"]) == 0
    snap = json.loads(capsys.readouterr().out)
    assert set(snap) == {"status", "workers", "failed", "throughput"}
    assert snap["status"]["run"]["stage"] == "embedding" and snap["workers"][0]["worker_id"] == "w-1"


def test_stopped_workers_are_counted_not_listed_and_paths_keep_both_ends(
    settings: RedisSettings, transport: RedisTransport, tmp_path: Path
) -> None:
    from bus.transport import WorkerRecord

    populate(transport)
    long_path = "chains/2024-01/" + "a-very-long-subreddit-name-" * 3 + "/part-0042.parquet"
    transport.heartbeat(
        WorkerRecord("w-busy", "hostB", 7, "python", "mps", "0.1.0", ["default"], current_job=long_path)
    )
    transport.heartbeat(WorkerRecord("w-gone", "hostC", 8, "rust", "cpu", "0.1.0", ["default"], state="stopped"))
    state(tmp_path)
    text = draw(settings, tmp_path)
    assert "workers (2 healthy of 2; 1 stopped, not shown)" in text
    assert "w-gone" not in text
    assert status_view.middle_ellipsis(long_path) in text
    shown = status_view.middle_ellipsis(long_path)
    assert shown.startswith("chains/2024-01/") and shown.endswith("part-0042.parquet") and len(shown) == 60
