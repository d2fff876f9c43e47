"""``docs/parity.md`` and the ``Twin:`` lines agree: every pair in its table
names files that exist and whose first lines name each other."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "parity.md"


def pairs() -> list[tuple[str, str]]:
    table = DOC.read_text(encoding="utf-8").split("## Twin pairs", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([^`]+\.py)` \| `([^`]+\.rs)` \|", table, flags=re.M)


def twin_line(path: str) -> set[str]:
    first = (ROOT / path).read_text(encoding="utf-8").splitlines()[0]
    prefix = "# Twin: " if path.endswith(".py") else "// Twin: "
    assert first.startswith(prefix), f"{path} does not start with {prefix!r}"
    names = first[len(prefix) :].split(" (", 1)[0]
    return {n.strip() for n in names.split(",")}


def test_the_table_lists_twin_pairs() -> None:
    assert len(pairs()) >= 20


def test_every_twin_file_names_exactly_its_twins_on_its_first_line() -> None:
    twins: dict[str, set[str]] = defaultdict(set)
    for py, rs in pairs():
        assert (ROOT / py).is_file() and (ROOT / rs).is_file(), (py, rs)
        twins[py].add(rs)
        twins[rs].add(py)
    for path, expected in twins.items():
        assert twin_line(path) == expected, path
