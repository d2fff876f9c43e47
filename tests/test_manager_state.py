"""state.json is never torn under concurrent readers, and the run's state
machine allows exactly the documented moves."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from manager.state import IllegalTransition, Stage, StageMachine, latest_run_dir, read_state, write_atomic

READER = r"""
import hashlib, json, sys, time
path, stop = sys.argv[1], sys.argv[2]
import os
reads = 0
while not os.path.exists(stop):
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        continue
    d = json.loads(raw)
    assert hashlib.sha256(d["pad"].encode()).hexdigest() == d["check"], "torn"
    reads += 1
print(reads)
"""


def version(i: int) -> dict[str, object]:
    pad = chr(ord("a") + i % 26) * (1 + (i * 7919) % 60_000)  # sizes jump between 1 B and 60 kB
    return {"n": i, "pad": pad, "check": hashlib.sha256(pad.encode()).hexdigest()}


def test_state_json_is_never_torn_under_concurrent_readers(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    stop = tmp_path / "stop"
    write_atomic(path, version(0))
    errors: list[BaseException] = []
    reads = [0]

    def read_loop() -> None:
        while not stop.exists():
            try:
                d = read_state(path)
                assert hashlib.sha256(d["pad"].encode()).hexdigest() == d["check"]
                reads[0] += 1
            except BaseException as e:  # any failure is a torn read
                errors.append(e)
                return

    threads = [threading.Thread(target=read_loop) for _ in range(3)]
    proc = subprocess.Popen(
        [sys.executable, "-c", READER, str(path), str(stop)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    for t in threads:
        t.start()
    for i in range(1, 150):
        write_atomic(path, version(i))
    stop.touch()
    for t in threads:
        t.join(30)
    out, err = proc.communicate(timeout=30)
    assert not errors, errors[:1]
    assert proc.returncode == 0, err
    assert reads[0] > 0 and int(out) > 0
    assert read_state(path)["n"] == 149
    assert sorted(os.listdir(tmp_path)) == ["state.json", "stop"]  # no temporary file left behind


def test_failed_write_leaves_the_old_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.json"
    write_atomic(path, {"n": 1})

    def fail(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("manager.state.os.replace", fail)
    with pytest.raises(OSError):
        write_atomic(path, {"n": 2})
    assert read_state(path) == {"n": 1}
    assert os.listdir(tmp_path) == ["state.json"]  # the temporary file was removed


def test_the_happy_path_and_the_shortcut_without_clustering() -> None:
    m = StageMachine()
    for s in (Stage.SCANNING, Stage.EMBEDDING, Stage.CLUSTERING, Stage.DONE):
        m.move(s)
    assert m.stage is Stage.DONE and m.stage.final
    m2 = StageMachine()
    for s in (Stage.SCANNING, Stage.EMBEDDING, Stage.DONE):
        m2.move(s)
    assert m2.stage is Stage.DONE


@pytest.mark.parametrize("end", [Stage.ERROR, Stage.INTERRUPTED])
def test_any_working_stage_may_fail_or_be_interrupted(end: Stage) -> None:
    for stop_at in (Stage.SCANNING, Stage.EMBEDDING, Stage.CLUSTERING):
        m = StageMachine()
        for s in (Stage.SCANNING, Stage.EMBEDDING, Stage.CLUSTERING):
            m.move(s)
            if s is stop_at:
                break
        m.move(end)
        assert m.stage is end


@pytest.mark.parametrize(
    "path",
    [
        [Stage.EMBEDDING],  # no scan
        [Stage.SCANNING, Stage.CLUSTERING],  # skipped embedding
        [Stage.SCANNING, Stage.EMBEDDING, Stage.CLUSTERING, Stage.EMBEDDING],  # backwards
        [Stage.SCANNING, Stage.EMBEDDING, Stage.DONE, Stage.ERROR],  # after the end
        [Stage.SCANNING, Stage.ERROR, Stage.INTERRUPTED],
    ],
)
def test_illegal_moves_are_refused(path: list[Stage]) -> None:
    m = StageMachine()
    with pytest.raises(IllegalTransition):
        for s in path:
            m.move(s)


def test_latest_run_dir_picks_the_newest_state(tmp_path: Path) -> None:
    assert latest_run_dir(tmp_path) is None
    for name in ("a", "b"):
        (tmp_path / "runs" / name).mkdir(parents=True)
        write_atomic(tmp_path / "runs" / name / "state.json", {"run": name})
    os.utime(tmp_path / "runs" / "a" / "state.json", ns=(1, 1))
    assert latest_run_dir(tmp_path) == tmp_path / "runs" / "b"
    assert json.loads((tmp_path / "runs" / "b" / "state.json").read_text()) == {"run": "b"}
