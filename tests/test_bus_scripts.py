"""Every Lua script is a file in ``bus/lua`` with its header (DESIGN: "every
Lua script is in bus/lua/"), and no Python module carries one inline."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("bus", "manager", "workers", "clusterer", "models", "corpus", "bench")


def test_no_python_module_carries_inline_lua() -> None:
    inline = [
        str(p.relative_to(ROOT))
        for top in PRODUCT
        for p in (ROOT / top).rglob("*.py")
        if re.search(r"redis\.call\(|redis\.pcall\(", p.read_text(encoding="utf-8"))
    ]
    assert inline == []


def test_every_script_names_itself_and_lists_its_keys_and_arguments() -> None:
    scripts = sorted((ROOT / "bus" / "lua").glob("*.lua"))
    assert len(scripts) >= 13
    for path in scripts:
        head = path.read_text(encoding="utf-8").splitlines()
        assert head[0].startswith(f"-- {path.stem}:"), path.name
        comments = [line for line in head if line.startswith("--")]
        assert any(line.startswith("-- KEYS") for line in comments), f"{path.name}: no KEYS header"
        assert any(line.startswith("-- ARGV") or "ARGV[1]" in line for line in comments), f"{path.name}: no ARGV"
