"""The run's state machine and ``state.json``.

Stages: ``scanning -> embedding -> clustering -> done``; clustering is
skipped when no clusterer is configured. Any stage that is not final may
end in ``error`` or ``interrupted``. ``done``, ``error`` and ``interrupted``
are final.

``state.json`` is rewritten whole on every change: to a temporary file in
the same directory, fsynced, renamed over the old one (atomic on POSIX),
then the directory is fsynced. A reader sees the old or the new file,
never a torn one.
"""

from __future__ import annotations

import enum
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"
STATE_VERSION = 1


class Stage(str, enum.Enum):
    """Where a run is."""

    INIT = "init"
    SCANNING = "scanning"
    EMBEDDING = "embedding"
    CLUSTERING = "clustering"
    DONE = "done"
    ERROR = "error"
    INTERRUPTED = "interrupted"

    @property
    def final(self) -> bool:
        return self in (Stage.DONE, Stage.ERROR, Stage.INTERRUPTED)


_FORWARD: dict[Stage, tuple[Stage, ...]] = {
    Stage.INIT: (Stage.SCANNING,),
    Stage.SCANNING: (Stage.EMBEDDING,),
    Stage.EMBEDDING: (Stage.CLUSTERING, Stage.DONE),
    Stage.CLUSTERING: (Stage.DONE,),
}


class Interrupted(Exception):
    """The run was asked to stop: it ends ``interrupted``."""


class IllegalTransition(RuntimeError):
    """A stage change the state machine does not allow (a programming error)."""


class StageMachine:
    """Holds the current stage and refuses illegal moves. Thread-safe."""

    def __init__(self) -> None:
        self._stage = Stage.INIT
        self._lock = threading.Lock()

    @property
    def stage(self) -> Stage:
        return self._stage

    def can_move(self, to: Stage) -> bool:
        cur = self._stage
        if cur.final:
            return False
        return to in _FORWARD.get(cur, ()) or to in (Stage.ERROR, Stage.INTERRUPTED)

    def move(self, to: Stage) -> Stage:
        """Move to ``to``; returns the stage left."""
        with self._lock:
            if not self.can_move(to):
                raise IllegalTransition(f"cannot move from {self._stage.value} to {to.value}")
            old, self._stage = self._stage, to
            return old


def write_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to ``path`` so that no reader ever sees a partial file."""
    write_bytes_atomic(path, json.dumps(data, indent=1, sort_keys=True, default=str).encode("utf-8"))


def write_bytes_atomic(path: Path, body: bytes) -> None:
    """Write ``body`` to ``path`` through a temporary file, fsynced and renamed;
    on failure (a full disk) the temporary is removed and ``path`` untouched."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_state(path: Path) -> dict[str, Any]:
    """The state a run last wrote (``path`` is the file or the run dir)."""
    p = Path(path)
    if p.is_dir():
        p = p / STATE_FILE
    data: dict[str, Any] = json.loads(p.read_text(encoding="utf-8"))
    return data


def latest_run_dir(output_root: Path) -> Path | None:
    """The most recently updated run dir under ``<output-root>/runs``."""
    runs = Path(output_root) / "runs"
    if not runs.is_dir():
        return None
    found = [d for d in runs.iterdir() if (d / STATE_FILE).is_file()]
    if not found:
        return None
    return max(found, key=lambda d: (d / STATE_FILE).stat().st_mtime_ns)
