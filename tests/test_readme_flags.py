"""README.md's flag tables (section "Configuration") and the programs agree:
every flag a table lists, aliases included, is accepted by the commands its
row names; every flag a Python program accepts is in its table; and a
default the table gives as a plain value is the one ``--help`` shows."""

from __future__ import annotations

import argparse
import re
import subprocess

import pytest

from tests.support import ROOT
from tests.support.rust_worker import rust_worker_binary
from tests.test_cli_flags import PARSERS, clusterer_parser, manager_sub, worker_parser

README = ROOT / "README.md"
MANAGER_COMMANDS = ("serve", "scan", "status", "run", "verify-journal", "pause", "resume", "drain", "requeue-failed")
PURE_VALUES = re.compile(r"^`[^`]+`(, `[^`]+`)*$")


def table(heading: str) -> list[list[str]]:
    """The rows (cells stripped) of the first table under ``heading``."""
    lines = README.read_text(encoding="utf-8").split(f"\n{heading}", 1)[1].splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines[start + 2 : end]]


def flags(cell: str) -> list[str]:
    return re.findall(r"`(--[a-z][a-z0-9-]*)`", cell)


def values(cell: str) -> list[str] | None:
    """The cell's defaults when it is nothing but backticked values."""
    return re.findall(r"`([^`]+)`", cell) if PURE_VALUES.match(cell) else None


def same_default(readme: str, default: object) -> bool:
    if isinstance(default, bool) or default is None:
        return False
    if isinstance(default, int | float):
        try:
            return float(readme) == float(default)
        except ValueError:
            return False
    return readme == str(default)


def check_defaults(parser: argparse.ArgumentParser, row_flags: list[str], cell: str, where: str) -> int:
    """Compare a pure-value default cell with the parser's defaults, one value
    per distinct option (or one for all); returns the comparisons made."""
    vals = values(cell)
    if vals is None:
        return 0
    actions = list(dict.fromkeys(parser._option_string_actions[f] for f in row_flags))
    if len(vals) == 1:
        vals = vals * len(actions)
    if len(vals) != len(actions):
        return 0
    for action, val in zip(actions, vals, strict=True):
        if action.default is None or action.default is False:
            continue  # a default worked out at run time, which README.md describes
        assert same_default(val, action.default), f"{where} {action.option_strings}: README {val!r}, {action.default!r}"
        shown = parser._get_formatter()._format_action(action)
        assert "default" in shown, f"{where} {action.option_strings}: --help does not state its default"
    return len(actions)


@pytest.fixture(autouse=True)
def no_root_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defaults as a clean environment has them."""
    for name in ("EMBEDFLEET_DATA_ROOT", "EMBEDFLEET_INPUT_ROOT", "EMBEDFLEET_OUTPUT_ROOT", "EMBEDFLEET_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions if a.help != argparse.SUPPRESS for s in a.option_strings if s.startswith("--")}


REDIS_FLAGS = {f for row in table("### Every program that talks to Redis") for f in flags(row[0])}


def test_the_tables_are_found() -> None:
    assert len(table("### Workers")) > 20 and len(table("### Manager")) > 30 and len(table("### Clusterer")) > 25
    assert {"--redis-url", "--namespace"} <= REDIS_FLAGS


def test_the_manager_table_agrees_with_every_subcommand() -> None:
    documented: dict[str, set[str]] = {c: set(REDIS_FLAGS) for c in MANAGER_COMMANDS}
    compared = 0
    for row in table("### Manager"):
        commands = [c for c in re.findall(r"`([a-z-]+)`", row[3]) if c in MANAGER_COMMANDS]
        assert row[0] == "" or commands, row
        for command in commands:
            parser = manager_sub(command)()
            for flag in flags(row[0]):
                assert flag in parser._option_string_actions, f"README: manager {command} has {flag}; it does not"
                documented[command].add(flag)
            compared += check_defaults(parser, flags(row[0]), row[2], f"manager {command}")
    for command in MANAGER_COMMANDS:
        missing = option_strings(manager_sub(command)()) - documented[command] - {"--help"}
        assert not missing, f"manager {command} accepts {sorted(missing)}, which README.md does not list for it"
    assert compared >= 10


def test_the_clusterer_table_agrees_with_the_clusterer() -> None:
    parser = clusterer_parser()
    documented = set(REDIS_FLAGS)
    compared = 0
    for row in table("### Clusterer"):
        for flag in flags(row[0]):
            assert flag in parser._option_string_actions, f"README lists clusterer {flag}; it has none"
            documented.add(flag)
        compared += check_defaults(parser, flags(row[0]), row[2], "clusterer") if flags(row[0]) else 0
    missing = option_strings(parser) - documented - {"--help"}
    assert not missing, f"the clusterer accepts {sorted(missing)}, which README.md does not list"
    assert compared >= 15


def worker_rows() -> list[tuple[list[str], str, str]]:
    """(flags, default cell, which worker) of the workers' table."""
    return [(flags(r[0]), r[2], r[3]) for r in table("### Workers (") if flags(r[0])]


def test_the_workers_table_agrees_with_the_python_worker() -> None:
    parser = worker_parser()
    documented = set(REDIS_FLAGS)
    compared = 0
    for row_flags, default, which in worker_rows():
        if not which.startswith(("both", "Python")):
            continue
        for flag in row_flags:
            assert flag in parser._option_string_actions, f"README lists python worker {flag}; it has none"
            documented.add(flag)
        compared += check_defaults(parser, row_flags, default, "python worker")
    missing = option_strings(parser) - documented - {"--help"}
    assert not missing, f"the Python worker accepts {sorted(missing)}, which README.md does not list"
    assert compared >= 5


def test_the_workers_table_agrees_with_the_rust_worker() -> None:
    helptext = subprocess.run(
        [str(rust_worker_binary()), "--help"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    # An option's line is indented at most 6 spaces, its description 10.
    option = r"^ {1,6}(?:-\w, )?--([a-z0-9-]+)[^\n]*\n(?:(?! {1,6}(?:-\w, )?--)[^\n]*\n)*"
    blocks = {m.group(1): m.group(0) for m in re.finditer(option, helptext, re.M)}
    compared = 0
    for row_flags, default, which in worker_rows():
        if not which.startswith(("both", "Rust")):
            continue
        for flag in row_flags:
            assert re.search(rf"(--|alias(?:es)?: [^\]]*){re.escape(flag.lstrip('-'))}\b", helptext), f"Rust: no {flag}"
        vals = values(default)
        if vals and len(vals) == 1 and len(row_flags) == 1 and row_flags[0].lstrip("-") in blocks:
            assert f"[default: {vals[0]}]" in blocks[row_flags[0].lstrip("-")], (row_flags, vals)
            compared += 1
    assert compared >= 3


@pytest.mark.parametrize("role", sorted(PARSERS))
def test_every_alias_in_help_is_in_the_readme(role: str) -> None:
    """An alias ``--help`` shows is named in README.md too."""
    text = README.read_text(encoding="utf-8")
    for action in PARSERS[role]()._actions:
        for spelling in action.option_strings[1:]:
            if spelling.startswith("--"):
                assert f"`{spelling}`" in text, f"{role}: {spelling} (alias of {action.option_strings[0]})"
