"""The shared JSON vectors under ``tests/vectors/`` (``docs/protocol.md``,
``docs/reuse.md``, ``docs/parity.md``), loaded the same way by every test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parent.parent / "vectors"


def load(name: str) -> Any:
    """The parsed contents of ``tests/vectors/<name>``."""
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))
