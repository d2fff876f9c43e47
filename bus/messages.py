# Twin: rust/core/src/job.rs (docs/parity.md)
"""Job messages: the JSON that travels on the lane streams.

A job names one input file (or one row range of it) relative to the input
root, the output it must produce relative to the output root, the input
fingerprint and the model. Its id is derived from those, so enqueuing the same
work twice yields the same id and the second enqueue is a no-op.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import posixpath
import secrets
from dataclasses import dataclass, field, replace
from typing import Any

from bus import wire
from bus.constants import DEFAULT_COLUMN, DEFAULT_LANE, INPUT_DIR, OUTPUT_DIR, PROTOCOL_VERSION
from bus.errors import InvalidMessage, UnsafePath


def job_id(path: str, rows: tuple[int, int] | None, fingerprint: str, model: str) -> str:
    """Deterministic id of a job: 32 hex digits of SHA-256 over its identity."""
    start, end = rows if rows is not None else ("", "")
    material = "\x1f".join(["v1", path, str(start), str(end), fingerprint, model])
    return hashlib.sha256(material.encode("utf-8")).hexdigest()[:32]


def output_path(path: str, rows: tuple[int, int] | None) -> str:
    """Output path (relative to the output root) for an input path and range.

    ``chains/s/sub/f.parquet`` -> ``embeddings/s/sub/f.parquet``; a row range
    adds ``.rows-<start>-<end>`` before the extension.
    """
    check_relative(path)
    parts = path.split("/")
    if parts[0] != INPUT_DIR:
        raise UnsafePath(f"{path}: input paths start with {INPUT_DIR}/")
    rel = "/".join([OUTPUT_DIR, *parts[1:]])
    if rows is None:
        return rel
    stem, ext = posixpath.splitext(rel)
    return f"{stem}.rows-{rows[0]}-{rows[1]}{ext}"


def check_relative(path: str) -> None:
    """Refuse a job path that could escape its dataset root."""
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        raise UnsafePath(f"{path!r}: job paths are relative POSIX paths")
    if any(p in ("", ".", "..") for p in path.split("/")):
        raise UnsafePath(f"{path!r}: job paths may not contain empty, '.' or '..' parts")


@dataclass(frozen=True)
class Job:
    """One unit of embedding work."""

    path: str
    out: str
    fingerprint: str
    model: str
    rows: tuple[int, int] | None = None
    column: str = DEFAULT_COLUMN
    id_column: str | None = None
    lane: str = DEFAULT_LANE
    attempt: int = 1
    id: str = field(default="")

    @classmethod
    def create(
        cls,
        path: str,
        fingerprint: str,
        model: str,
        rows: tuple[int, int] | None = None,
        column: str = DEFAULT_COLUMN,
        id_column: str | None = None,
        lane: str = DEFAULT_LANE,
    ) -> Job:
        """A new job with its id and output path derived from its identity."""
        return cls(
            path=path,
            out=output_path(path, rows),
            fingerprint=fingerprint,
            model=model,
            rows=rows,
            column=column,
            id_column=id_column,
            lane=lane,
            id=job_id(path, rows, fingerprint, model),
        )

    def next_attempt(self) -> Job:
        """The same job, one attempt later (for a retry)."""
        return replace(self, attempt=self.attempt + 1)

    def to_dict(self) -> dict[str, Any]:
        """The wire fields: ``id`` and ``out`` are derived from the others by the
        reader, and fields at their default are left out (they made most of a
        queued job's Redis memory otherwise)."""
        d: dict[str, Any] = {"v": PROTOCOL_VERSION, "path": self.path}
        if self.rows is not None:
            d["rows"] = list(self.rows)
        d["fp"] = self.fingerprint
        d["model"] = self.model
        if self.column != DEFAULT_COLUMN:
            d["col"] = self.column
        if self.id_column is not None:
            d["idcol"] = self.id_column
        if self.lane != DEFAULT_LANE:
            d["lane"] = self.lane
        if self.attempt != 1:
            d["attempt"] = self.attempt
        return d

    def to_json(self) -> str:
        """Compact JSON with keys in a fixed order (the wire form)."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Job:
        """Parse and validate a wire message; ``InvalidMessage`` (a
        ``ProtocolError``) with a stable reason if it is bad (``bus/wire.py``)."""
        d = wire.decode(raw)
        path = wire.required_text(d, "path")
        try:
            output_path(path, None)
        except UnsafePath as e:
            raise InvalidMessage(wire.UNSAFE_PATH, str(e)) from None
        wire.check_path_length(path)
        range_ = wire.rows(d)
        fingerprint, model = wire.required_text(d, "fp"), wire.required_text(d, "model")
        return cls(
            id=job_id(path, range_, fingerprint, model),
            path=path,
            out=output_path(path, range_),
            fingerprint=fingerprint,
            model=model,
            rows=range_,
            column=wire.optional_text(d, "col") or DEFAULT_COLUMN,
            id_column=wire.optional_text(d, "idcol"),
            lane=wire.lane(d),
            attempt=wire.attempt(d),
        )


class _EventIds:
    """Event ids: a random token per process and a sequence number."""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.token = secrets.token_hex(6)
        self.seq = itertools.count(1)

    def next(self) -> str:
        return f"{self.token}-{next(self.seq)}"


_event_ids = _EventIds()


def event_id() -> str:
    """A new unique event id, ``<12 hex digits per process>-<sequence>``.

    It is put in the event body once, before the first send, so a resent XADD
    (the reply was lost, the client tried again) carries the same ``eid`` and
    readers can drop the copy (docs/protocol.md, Events)."""
    return _event_ids.next()


def with_event_id(event: dict[str, Any]) -> dict[str, Any]:
    """The event with an ``eid`` (a new one unless it has one already)."""
    return event if "eid" in event else {**event, "eid": event_id()}


class SeenEventIds:
    """The last ``capacity`` event ids seen, for dropping resent copies.

    A resent XADD lands right after the original (the client retries on
    reconnect), so a window of recent ids is enough; ids are forgotten oldest
    first."""

    def __init__(self, capacity: int = 65536) -> None:
        self.capacity = capacity
        self._ids: dict[str, None] = {}

    def first_time(self, eid: object) -> bool:
        """False when ``eid`` was seen already; events without one are always new."""
        if not isinstance(eid, str) or not eid:
            return True
        if eid in self._ids:
            return False
        self._ids[eid] = None
        if len(self._ids) > self.capacity:
            del self._ids[next(iter(self._ids))]
        return True
