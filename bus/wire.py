# Twin: rust/core/src/wire.rs (docs/parity.md)
"""Reading a job message off a lane stream, strictly: a message either reads
as the Rust worker reads it (``rust/core/src/wire.rs``) or is refused with
the same reason category, pinned by ``tests/vectors/hostile_messages.json``.

Every refusal is an ``InvalidMessage`` whose text, the dead-letter reason, is
``invalid job message: <what>: <detail>``. ``what`` is stable (the list is
in ``docs/protocol.md``); the detail is for people and may differ between the
two languages. Checks run in a fixed order, so a message with several faults
gets the same category from both: size, UTF-8 and JSON, object, version,
then the fields in wire order.

JSON is read as serde_json reads it: no ``NaN``/``Infinity``, no number
beyond a double, no lone surrogate, at most ``MAX_JSON_DEPTH`` levels; an
integer field must be a JSON integer (``2``, not ``2.0``, ``"2"`` or
``true``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from bus import constants as c
from bus.errors import InvalidMessage

TOO_LARGE = "too large"
NO_JOB_FIELD = "no job field"
NOT_JSON = "not JSON"
NOT_OBJECT = "not an object"
UNSUPPORTED_VERSION = "unsupported version"
MISSING_FIELD = "missing field"
"""Followed by the field's name: ``missing field path``."""
BAD_FIELD = "bad field"
"""Followed by the field's name: ``bad field attempt``."""
UNSAFE_PATH = "unsafe path"
PATH_TOO_LONG = "path too long"

_LANE = re.compile(c.LANE_PATTERN)
_I64_MIN, _U64_MAX = -(2**63), 2**64 - 1


def _out_of_range(literal: str) -> ValueError:
    return ValueError(f"number out of range: {literal[:40]}")


def _integer(literal: str) -> int | float:
    """As serde_json: an integer beyond 64 bits is a double, ``-0`` too."""
    if literal == "-0":
        return -0.0
    v = int(literal)
    if _I64_MIN <= v <= _U64_MAX:
        return v
    try:
        return float(v)
    except OverflowError:
        raise _out_of_range(literal) from None


def _double(literal: str) -> float:
    v = float(literal)
    if v in (float("inf"), float("-inf")):
        raise _out_of_range(literal)
    return v


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_tree(value: Any) -> None:
    """Depth and strings of a parsed message, without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, str):
            _check_text(v)
        elif isinstance(v, dict | list):
            if depth > c.MAX_JSON_DEPTH:
                raise InvalidMessage(NOT_JSON, f"nested deeper than {c.MAX_JSON_DEPTH} levels")
            items = v.items() if isinstance(v, dict) else ((None, x) for x in v)
            for key, x in items:
                if key is not None:
                    _check_text(key)
                stack.append((x, depth + 1))


def _check_text(s: str) -> None:
    if not s.isascii():
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidMessage(NOT_JSON, "a string holds a lone surrogate") from None


def decode(raw: str | bytes) -> dict[str, Any]:
    """The message's JSON object, after the checks of size, encoding, syntax,
    shape and version."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if len(data) > c.MAX_MESSAGE_BYTES:
        raise InvalidMessage(TOO_LARGE, f"{len(data)} bytes, the limit is {c.MAX_MESSAGE_BYTES}")
    try:
        text = data.decode("utf-8")
        d = json.loads(text, parse_int=_integer, parse_float=_double, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise InvalidMessage(NOT_JSON, str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    _check_tree(d)
    if not isinstance(d, dict):
        raise InvalidMessage(NOT_OBJECT, f"the message is a JSON {_kind(d)}")
    v = d.get("v")
    if not _is_int(v) or v not in c.READABLE_VERSIONS:
        readable = " and ".join(map(str, c.READABLE_VERSIONS))
        raise InvalidMessage(UNSUPPORTED_VERSION, f"v is {_show(v)}; this worker reads {readable}")
    return d


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _kind(v: Any) -> str:
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if v is None else kinds.get(type(v), type(v).__name__)


def _show(v: Any) -> str:
    text = json.dumps(v, ensure_ascii=True) if v is not None else "absent or null"
    return text if len(text) <= 40 else text[:37] + "..."


def required_text(d: dict[str, Any], name: str) -> str:
    """A field that must be a string."""
    v = d.get(name)
    if v is None:
        raise InvalidMessage(f"{MISSING_FIELD} {name}", f"{name} is absent or null")
    if not isinstance(v, str):
        raise InvalidMessage(f"{BAD_FIELD} {name}", f"{name} is a {_kind(v)}, not a string")
    return v


def optional_text(d: dict[str, Any], name: str) -> str | None:
    """A field that is absent, null or a non-empty string."""
    v = d.get(name)
    if v is None:
        return None
    if not isinstance(v, str) or not v:
        raise InvalidMessage(f"{BAD_FIELD} {name}", f"{name} is {_show(v)}, not a non-empty string")
    return v


def rows(d: dict[str, Any]) -> tuple[int, int] | None:
    """``[start, end)``, integers with ``0 <= start <= end <= MAX_ROW``, or none."""
    v = d.get("rows")
    if v is None:
        return None
    ok = isinstance(v, list) and len(v) == 2 and all(_is_int(x) for x in v)
    if not ok or not 0 <= v[0] <= v[1] <= c.MAX_ROW:
        raise InvalidMessage(f"{BAD_FIELD} rows", f"{_show(v)} is not a row range [start, end) with 0 <= start <= end")
    return int(v[0]), int(v[1])


def attempt(d: dict[str, Any]) -> int:
    """An integer from 1 to ``MAX_ATTEMPT``; 1 when absent or null."""
    v = d.get("attempt")
    if v is None:
        return 1
    if not _is_int(v) or not 1 <= v <= c.MAX_ATTEMPT:
        raise InvalidMessage(f"{BAD_FIELD} attempt", f"{_show(v)} is not an integer from 1 to {c.MAX_ATTEMPT}")
    return int(v)


def lane(d: dict[str, Any]) -> str:
    """A lane name (``LANE_PATTERN``); the default lane when absent or null."""
    v = d.get("lane")
    if v is None:
        return c.DEFAULT_LANE
    if not isinstance(v, str) or not _LANE.fullmatch(v):
        raise InvalidMessage(f"{BAD_FIELD} lane", f"{_show(v)} is not a lane name ({c.LANE_PATTERN})")
    return v


def check_path_length(path: str) -> None:
    """Refuse a path no file system can open (ENAMETOOLONG)."""
    size = len(path.encode("utf-8"))
    if size > c.MAX_PATH_BYTES:
        raise InvalidMessage(PATH_TOO_LONG, f"the path has {size} bytes, the limit is {c.MAX_PATH_BYTES}")
    longest = max(len(p.encode("utf-8")) for p in path.split("/"))
    if longest > c.MAX_NAME_BYTES:
        raise InvalidMessage(PATH_TOO_LONG, f"a name of {longest} bytes, the limit is {c.MAX_NAME_BYTES}")
