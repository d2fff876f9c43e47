"""The run journal: ``events.jsonl``, one JSON record a line, hash-chained.

Every record carries the schema version ``v``, a sequence number ``seq``,
the time (``ts`` ISO 8601 UTC and ``ts_ms``), the run id, the run's stage,
a level, an event type, a message, counter deltas, usage deltas, an error
(or null), free-form ``data``, and ``prev_hash``: the SHA-256 of the
previous line's exact bytes (64 zeros for the first line). Editing,
removing, inserting or reordering any line therefore breaks the chain at
the next line. Cutting lines off the end is caught by the anchor: the
manager records the head (last ``seq`` and the SHA-256 of the last line) in
``state.json``, and ``verify`` checks the file against it.

The manager is the only writer. Everything is redacted before it is
written. Lines are flushed at once and fsynced at most once a second (and
on every stage change and on close), which keeps bookkeeping per job well
under a millisecond.

A full or failing disk (``manager.disk``): a line that could not be written
whole is cut off again (the file goes back to its last whole line) and the
write is retried through the run's ``DiskGuard``; the chain never holds a
torn line, and the line is written once.

The chain proves integrity against accidental or careless edits; someone
who rewrites the whole file and ``state.json`` consistently is not caught
(that needs a key held elsewhere).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from manager.disk import DiskGuard
from manager.redaction import Redactor

SCHEMA_VERSION = 1
JOURNAL_FILE = "events.jsonl"
GENESIS = "0" * 64
LEVELS = ("debug", "info", "warning", "error")
FIELDS = (
    "v",
    "seq",
    "ts",
    "ts_ms",
    "run",
    "stage",
    "level",
    "type",
    "msg",
    "counters",
    "usage",
    "error",
    "data",
    "prev_hash",
)


def line_hash(raw: bytes) -> str:
    """SHA-256 (hex) of one journal line without its newline."""
    return hashlib.sha256(raw).hexdigest()


def iso_utc(ts_ms: int) -> str:
    return (
        datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


@dataclass(frozen=True)
class Head:
    """Where the chain ends: the last sequence number and its line's hash."""

    seq: int
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash}


def _tail_line(path: Path, chunk: int = 65536) -> bytes | None:
    """The last non-empty line of a file, read from its end."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        buf = b""
        while end > 0:
            start = max(0, end - chunk)
            f.seek(start)
            buf = f.read(end - start) + buf
            end = start
            lines = [ln for ln in buf.split(b"\n") if ln.strip()]
            if len(lines) > 1 or (lines and start == 0):
                return lines[-1]
    return None


class Journal:
    """Append-only, hash-chained, redacted writer of ``events.jsonl``.

    Reopening an existing journal continues its chain. Safe to call from
    several threads (the coordinator and the API's action handlers).
    ``guard`` waits out a full or failing disk (none: fail at once);
    ``os_write`` is ``os.write`` (a test hands in a failing one)."""

    def __init__(
        self,
        path: Path,
        run_id: str,
        redactor: Redactor,
        fsync_interval_s: float = 1.0,
        *,
        guard: DiskGuard | None = None,
        os_write: Callable[[int, bytes | memoryview], int] = os.write,
    ) -> None:
        self.path = Path(path)
        self.run_id = run_id
        self.redactor = redactor
        self.fsync_interval_s = fsync_interval_s
        self.guard = guard
        self._os_write = os_write
        self.stage = "init"
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._size = self._whole_size()
        self._head = self._resume()
        self._last_sync = time.monotonic()

    def _whole_size(self) -> int:
        """The file's size up to its last whole line: a torn tail (a crash
        while the disk was full) is cut off, so the chain goes on cleanly."""
        size = os.fstat(self._fd).st_size
        end, chunk = size, 65536
        with open(self.path, "rb") as f:
            while end > 0:
                start = max(0, end - chunk)
                f.seek(start)
                nl = f.read(end - start).rfind(b"\n")
                if nl >= 0:
                    end = start + nl + 1
                    break
                end = start
        if end != size:
            os.ftruncate(self._fd, end)
        return end

    def _resume(self) -> Head:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return Head(0, GENESIS)
        last = _tail_line(self.path)
        if last is None:
            return Head(0, GENESIS)
        return Head(int(json.loads(last)["seq"]), line_hash(last))

    @property
    def head(self) -> Head:
        with self._lock:
            return self._head

    def write(
        self,
        event_type: str,
        msg: str = "",
        *,
        level: str = "info",
        counters: Mapping[str, int | float] | None = None,
        usage: dict[str, Any] | None = None,
        error: str | None = None,
        data: dict[str, Any] | None = None,
        ts_ms: int | None = None,
        sync: bool = False,
    ) -> dict[str, Any]:
        """Append one record (redacted) and return it."""
        if level not in LEVELS:
            raise ValueError(f"unknown journal level {level!r}")
        now = ts_ms if ts_ms is not None else int(time.time() * 1000)
        with self._lock:
            if self._fd < 0:
                raise RuntimeError(f"journal {self.path} is closed: the run has ended")
            record = {
                "v": SCHEMA_VERSION,
                "seq": self._head.seq + 1,
                "ts": iso_utc(now),
                "ts_ms": now,
                "run": self.run_id,
                "stage": self.stage,
                "level": level,
                "type": event_type,
                "msg": msg,
                "counters": dict(counters or {}),
                "usage": usage or {},
                "error": error,
                "data": data or {},
                "prev_hash": self._head.hash,
            }
            record = self.redactor.scrub(record)
            raw = json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")
            self._io(lambda: self._append(raw + b"\n"))
            self._head = Head(record["seq"], line_hash(raw))
            if sync or time.monotonic() - self._last_sync >= self.fsync_interval_s:
                self._sync()
            return record

    def _io(self, fn: Callable[[], None]) -> None:
        if self.guard is None:
            fn()
        else:
            self.guard.call(fn, str(self.path))

    def _append(self, line: bytes) -> None:
        """Write one whole line, or leave the file as it was and raise."""
        if os.fstat(self._fd).st_size != self._size:  # a failed try left part of a line
            os.ftruncate(self._fd, self._size)
        view = memoryview(line)
        try:
            while view:
                view = view[self._os_write(self._fd, view) :]
        except OSError:
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                pass  # cut off before the next try
            raise
        self._size += len(line)

    def _sync(self) -> None:
        self._io(lambda: os.fsync(self._fd))
        self._last_sync = time.monotonic()

    def sync(self) -> None:
        with self._lock:
            self._sync()

    def close(self) -> None:
        """Fsync and close; the file is closed even when the fsync fails."""
        with self._lock:
            if self._fd >= 0:
                try:
                    self._sync()
                finally:
                    os.close(self._fd)
                    self._fd = -1


@dataclass
class Verification:
    """What ``verify`` found."""

    path: str
    lines: int = 0
    head: Head | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "lines": self.lines,
            "head": self.head.to_dict() if self.head else None,
            "problems": self.problems,
        }


def _check_record(rec: Any, n: int, expect_seq: int, prev: str) -> list[str]:
    if not isinstance(rec, dict):
        return [f"line {n}: not a JSON object"]
    problems = []
    missing = [f for f in FIELDS if f not in rec]
    if missing:
        problems.append(f"line {n}: missing fields {missing}")
    if rec.get("v") != SCHEMA_VERSION:
        problems.append(f"line {n}: unknown schema version {rec.get('v')!r}")
    if rec.get("prev_hash") != prev:
        problems.append(f"line {n}: prev_hash does not match line {n - 1} (line edited, removed, inserted or moved)")
    if rec.get("seq") != expect_seq:
        problems.append(f"line {n}: seq {rec.get('seq')!r}, expected {expect_seq} (lines removed or reordered)")
    return problems


def verify(path: Path, anchor: Head | None = None, final: bool = False) -> Verification:
    """Check the chain of a journal, and its head against ``anchor`` if given.

    ``anchor`` is the head ``state.json`` recorded: the line with that
    ``seq`` must hash to it (else lines were cut off or the line edited).
    With ``final`` (the run ended), the journal must also end there."""
    result = Verification(str(path))
    prev, expect_seq = GENESIS, 1
    anchored = anchor is None
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            raw = raw.rstrip(b"\n")
            result.lines = n
            try:
                rec = json.loads(raw)
            except ValueError:
                result.problems.append(f"line {n}: not valid JSON")
                rec = None
            if rec is not None:
                result.problems += _check_record(rec, n, expect_seq, prev)
                if isinstance(rec, dict) and isinstance(rec.get("seq"), int):
                    expect_seq = rec["seq"]
            prev = line_hash(raw)
            result.head = Head(expect_seq, prev)
            if anchor is not None and expect_seq == anchor.seq:
                anchored = True
                if prev != anchor.hash:
                    result.problems.append(
                        f"line {n} (seq {anchor.seq}) differs from the head state.json recorded (line edited)"
                    )
            expect_seq += 1
    if anchor is not None:
        got = result.head.seq if result.head else 0
        if not anchored:
            result.problems.append(
                f"journal ends at seq {got} but state.json recorded seq {anchor.seq} (lines cut off the end)"
            )
        elif final and got != anchor.seq:
            result.problems.append(
                f"journal goes on to seq {got} after the run ended at seq {anchor.seq} (lines added)"
            )
    return result


def verify_run(target: Path) -> Verification:
    """Verify a run dir's (or a journal file's) chain, anchored by its state.json."""
    target = Path(target)
    journal = target / JOURNAL_FILE if target.is_dir() else target
    state = journal.parent / "state.json"
    anchor, final = None, False
    if state.is_file():
        data = json.loads(state.read_text(encoding="utf-8"))
        head = (data.get("journal") or {}).get("head") or {}
        if isinstance(head.get("seq"), int) and isinstance(head.get("hash"), str) and head["seq"] > 0:
            anchor = Head(head["seq"], head["hash"])
        final = bool(data.get("final"))
    return verify(journal, anchor, final)
