"""The manager's modules import one another in one direction only: the graph
of ``manager.*`` imports, function-level ones included, has no cycle, and
none is hidden behind ``importlib`` or ``TYPE_CHECKING`` (issue 20: the
coordinator and its steps had a circle dodged that way)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support import ROOT

PACKAGE = ROOT / "manager"
DISPATCH = {"manager/__main__.py"}
"""Loads the command modules by name (a table of subcommands, no cycle to hide)."""


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _targets(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.module is None or node.level:
        return []
    # ``from manager import scan`` imports the submodule; ``from manager import __version__`` the package.
    subs = [f"{node.module}.{a.name}" for a in node.names]
    found = [m for m in subs if (ROOT / m.replace(".", "/")).with_suffix(".py").is_file()]
    return found or [node.module]


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        name = _module(path)
        graph[name] = {
            t
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for t in _targets(node)
            if t.startswith("manager.") and t != name
        }
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it, or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return [*stack[stack.index(n) :], n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_manager_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert {"manager.coordinator", "manager.events", "manager.watch", "manager.planning"} <= set(graph)
    assert graph["manager.coordinator"] >= {"manager.events", "manager.watch", "manager.planning"}
    assert cycle(graph) is None, " -> ".join(cycle(graph) or [])


def test_the_cycle_finder_finds_one() -> None:
    graph = {"manager.a": {"manager.b"}, "manager.b": {"manager.c"}, "manager.c": {"manager.a"}}
    assert cycle(graph) == ["manager.a", "manager.b", "manager.c", "manager.a"]
    assert cycle({"manager.a": {"manager.b"}, "manager.b": set()}) is None


def test_no_import_is_hidden_from_the_graph() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        if str(path.relative_to(ROOT)) in DISPATCH:
            continue
        text = path.read_text(encoding="utf-8")
        assert "import_module" not in text and "TYPE_CHECKING" not in text, path
