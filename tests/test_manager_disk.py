"""The manager's own disk is treated like Redis: a full or failing disk is an
outage it reports once, waits out with backoff and recovers from, journaling
every event once and losing none (they wait in Redis's events stream).

Unit tests with an injected failing ``os.write`` and ``write_atomic``; the
real thing (a tmpfs filled up in the test's own mount namespace, with the
real workers) is the fault harness's ``test_disk_full.py``."""

from __future__ import annotations

import errno
import itertools
import json
import logging
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import manager.coordinator as coordinator_module
from bus.settings import RedisSettings
from manager.coordinator import Coordinator, CoordinatorOptions
from manager.disk import DiskGuard, DiskUnavailable
from manager.journal import Journal, verify_run
from manager.redaction import Redactor
from manager.summary import EXIT_ERROR, EXIT_OK
from tests.support.fakes import FakeWorker, make_jobs

FAST = CoordinatorOptions(poll_s=0.05, refresh_s=0.2, trim_every_s=0.2, state_every_s=0.2, registry_every_s=0.5)


class FlakyDisk:
    """``os.write`` and ``write_atomic`` that fail with ENOSPC while ``full``
    is set; ``os.write`` first writes part of the data, as a filling disk does."""

    def __init__(self) -> None:
        self.full = threading.Event()
        self.failures = 0

    def write(self, fd: int, data: bytes | memoryview) -> int:
        if self.full.is_set():
            self.failures += 1
            if len(data) > 8 and self.failures % 2:
                return os.write(fd, bytes(data[:5]))  # a short write; the next call fails
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(fd, data)

    def wrap(self, real: Callable[[Path, dict[str, Any]], None]) -> Callable[[Path, dict[str, Any]], None]:
        def write_atomic(path: Path, data: dict[str, Any]) -> None:
            if self.full.is_set():
                self.failures += 1
                raise OSError(errno.ENOSPC, "No space left on device")
            real(path, data)

        return write_atomic


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_journal_rides_out_enospc_and_short_writes(tmp_path: Path) -> None:
    disk = FlakyDisk()
    guard = DiskGuard(timeout_s=30)
    j = Journal(tmp_path / "events.jsonl", "r1", Redactor([]), guard=guard, os_write=disk.write)
    j.write("one")
    disk.full.set()
    threading.Timer(0.6, disk.full.clear).start()
    j.write("two", data={"payload": "x" * 100})  # blocks until the disk has room again
    j.write("three")
    j.close()
    got = lines(tmp_path / "events.jsonl")
    assert [r["type"] for r in got] == ["one", "two", "three"]
    assert disk.failures >= 2
    assert verify_run(tmp_path / "events.jsonl").ok
    assert [o.what for o in guard.take_ended()] == [str(tmp_path / "events.jsonl")]


def test_a_torn_tail_left_by_a_crash_is_cut_off_when_the_journal_is_reopened(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    j = Journal(path, "r1", Redactor([]))
    j.write("one")
    j.close()
    with open(path, "ab") as f:
        f.write(b'{"v":1,"seq":2,"ts"')  # the crash left half a line
    j = Journal(path, "r1", Redactor([]))
    j.write("two")
    j.close()
    assert [r["type"] for r in lines(path)] == ["one", "two"]
    assert verify_run(path).ok


class Sleepless(threading.Event):
    """A stop event whose waits only move a fake clock on."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def wait(self, timeout: float | None = None) -> bool:
        self.now += timeout or 0.0
        return False


def test_the_guard_gives_up_after_its_timeout_then_tries_once(caplog: pytest.LogCaptureFixture) -> None:
    stop = Sleepless()
    guard = DiskGuard(timeout_s=5, stop=stop, clock=lambda: stop.now)
    calls = []

    def full() -> None:
        calls.append(stop.now)
        raise OSError(errno.ENOSPC, "No space left on device")

    with caplog.at_level(logging.WARNING, logger="embedfleet.manager"):
        with pytest.raises(DiskUnavailable, match="for more than 5 s"):
            guard.call(full, "/runs/r/state.json")
    waits = [b - a for a, b in itertools.pairwise(calls)]
    assert waits[:4] == [0.25, 0.5, 1.0, 2.0]
    reports = [r.message for r in caplog.records if r.message.startswith("cannot write")]
    assert len(reports) == 1 and "No space left on device" in reports[0], "the outage is reported once"
    n = len(calls)
    with pytest.raises(DiskUnavailable):
        guard.call(full, "/runs/r/summary.json")
    assert len(calls) == n + 1, "after giving up, a write is tried once"


def test_other_os_errors_are_not_an_outage() -> None:
    def denied() -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    with pytest.raises(PermissionError):
        DiskGuard(timeout_s=5).call(denied, "x")


@pytest.fixture
def fleet(settings: RedisSettings, redis_client: redis.Redis) -> Iterator[list[FakeWorker]]:
    workers: list[FakeWorker] = []
    yield workers
    for w in workers:
        w.stop()


def test_a_run_waits_out_a_full_disk_and_journals_every_event_once(
    settings: RedisSettings, tmp_path: Path, fleet: list[FakeWorker], monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = FlakyDisk()
    monkeypatch.setattr(coordinator_module, "write_atomic", disk.wrap(coordinator_module.write_atomic))
    co = Coordinator(settings, output_root=tmp_path / "out", options=FAST)
    co.journal._os_write = disk.write
    jobs = make_jobs(40)
    result: list[Any] = []
    runner = threading.Thread(target=lambda: result.append(co.run(jobs=jobs)))
    runner.start()
    fleet.append(FakeWorker(settings, "w1", job_s=0.05).start())
    deadline = threading.Event()
    while len(co.pump.events_seen) < 5 and not deadline.wait(0.02):
        pass
    disk.full.set()  # the workers go on; their events wait in Redis
    deadline.wait(1.5)
    disk.full.clear()
    runner.join(60)
    summary = result[0]
    assert summary.exit_code == EXIT_OK, summary.render()
    assert summary.done == 40
    recs = lines(co.run_dir / "events.jsonl")
    done = Counter(r["data"].get("job") for r in recs if r["type"] == "job_done")
    assert set(done) == {j.id for j in jobs} and set(done.values()) == {1}
    assert any(r["type"] == "disk_recovered" for r in recs)
    assert disk.failures > 0
    assert verify_run(co.run_dir).ok


def test_a_disk_full_past_the_wait_ends_the_run_in_error_without_a_traceback(
    settings: RedisSettings, tmp_path: Path, fleet: list[FakeWorker], monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = FlakyDisk()
    monkeypatch.setattr(coordinator_module, "write_atomic", disk.wrap(coordinator_module.write_atomic))
    opts = CoordinatorOptions(poll_s=0.05, refresh_s=0.2, state_every_s=0.2, disk_timeout_s=1.0)
    co = Coordinator(settings, output_root=tmp_path / "out", options=opts)
    co.journal._os_write = disk.write
    fleet.append(FakeWorker(settings, "w1", job_s=0.2).start())
    disk.full.set()
    summary = co.run(jobs=make_jobs(5))
    assert summary.status == "error" and summary.exit_code == EXIT_ERROR
    assert summary.error is not None and "No space left on device" in summary.error
