"""Reading redis-py's replies, which are bytes (or str, with
``decode_responses``): one helper for the whole code base."""

from __future__ import annotations


def as_text(value: bytes | str | None, default: str = "") -> str:
    """``value`` as text (UTF-8, bad bytes replaced); ``default`` for ``None``."""
    if value is None:
        return default
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
