"""Render benchmark results (the dicts ``bench_*.run`` return) as Markdown."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

STATUS = {"pass": "✅ pass", "fail": "❌ fail", "n/a": "➖ n/a (hardware absent)"}


def spread(samples: Sequence[float], fmt: str = "{:.2f}") -> str:
    """``median (min–max)`` of repeated measurements."""
    med = statistics.median(samples)
    if len(samples) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(samples))}–{fmt.format(max(samples))})"


def repeat(fn: Callable[[], float], n: int) -> list[float]:
    """Call a measurement ``n`` times and return every sample."""
    return [fn() for _ in range(n)]


def table(caption: str, columns: list[str], rows: list[list[Any]]) -> str:
    out = [f"**{caption}**", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def section(result: dict[str, Any]) -> str:
    parts = [f"## {result.get('title', result.get('module', '?'))}", ""]
    if result.get("measured"):
        parts += [f"*Measured {result['measured']} ({result.get('seconds', '?')} s).*", ""]
    if result.get("error"):
        parts += [f"**This benchmark failed:** `{result['error']}`", ""]
    for t in result.get("tables", []):
        parts.append(table(t["caption"], t["columns"], t["rows"]))
    for fig in result.get("figures", []):
        parts += [f"![{fig['caption']}]({fig['path']})", ""]
    if result.get("notes"):
        parts += [result["notes"], ""]
    return "\n".join(parts)


def document(results: list[dict[str, Any]], header: str) -> str:
    plan = [row for r in results for row in r.get("plan", [])]
    for r in results:
        if r.get("error"):
            plan.append(
                {"test": f"{r['module']} ran", "expected": "completes", "measured": r["error"][:80], "status": "fail"}
            )
    plan_rows = [[p["test"], p["expected"], p["measured"], STATUS.get(p["status"], "❌ fail")] for p in plan]
    body = [
        header,
        "## Results (test plan)",
        "",
        table("Every claim, measured", ["test", "expected", "measured", "status"], plan_rows),
    ]
    body += [section(r) for r in results]
    return "\n".join(body)
