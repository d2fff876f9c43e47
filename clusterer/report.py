"""The report a person reads: ``report.md`` here and ``report.html``
(``clusterer.report_html``), both made from ``clusters_summary.json`` alone
(a remote run's summary renders the same).

A partial run's failed inputs come first, with their reasons; then the
header, the topic tree (themes, topics, clusters, each with its sizes and
keywords), the table of clusters and each cluster's keywords and
representative texts. Texts are escaped and shortened.
"""

from __future__ import annotations

import re
from typing import Any

from clusterer.report_html import render_html
from clusterer.report_text import (
    header_lines,
    names,
    node_name,
    partial_notice,
    sizes,
    snippet,
    times,
    tree_walk,
    words,
)

__all__ = ["render_html", "render_markdown", "snippet"]

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+|!~])")


def _md(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", text)


def _md_item(path: str, reason: str) -> str:
    """One failed input as a Markdown list item: the path as code, the reason escaped."""
    code = path.replace("`", "'")
    return f"- `{code}`" + (f": {_md(snippet(reason))}" if reason else "")


def _keywords(item: dict[str, Any], n: int = 5) -> str:
    return ", ".join(_md(w) for w in names(item, n))


def tree_markdown(s: dict[str, Any]) -> list[str]:
    """The topic tree as a nested list."""
    out = []
    for depth, kind, item in tree_walk(s):
        pad = "  " * depth
        if kind == "cluster":
            name = f"[Cluster {item['id']}](#cluster-{item['id']})"
        else:
            name = f"**{node_name(item)}**"
        out.append(f"{pad}- {name}: {sizes(item)}; {_keywords(item)}")
    return ["## Topic tree", "", *out, ""] if out else []


def render_markdown(s: dict[str, Any]) -> str:
    out = ["# Clusters", ""]
    head, failed = partial_notice(s)
    if head:
        out += [head, "", *(_md_item(path, why) for path, why in failed), ""]
    out += [*(f"{line}  " for line in header_lines(s)), ""]
    if s.get("map"):
        out += [f"![2-D map of the clusters]({s['map']})", ""]
    out += tree_markdown(s)
    out += [
        "| cluster | theme | topic | rows | share | distinct texts | top keywords |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in s["cluster_list"]:
        out.append(
            f"| [{c['id']}](#cluster-{c['id']}) | {c.get('level1', '')} | {c.get('level2', '')} | {c['rows']:,} | "
            f"{100 * c['share']:.2f}% | {c['texts']:,} | {_keywords(c, 10)} |"
        )
    out.append("")
    for c in s["cluster_list"]:
        out += [f"## Cluster {c['id']}", ""]
        out.append(
            f"{c['rows']:,} rows ({100 * c['share']:.2f}%), {c['texts']:,} distinct texts, "
            f"mean membership {c['mean_probability']:.2f}; theme {c.get('level1')}, topic {c.get('level2')}.  "
        )
        label = "Frequent texts" if c.get("keywords_from") == "texts" else "Keywords"
        out += [f"{label}: {_keywords(c, 10)}", ""]
        for r in c["representatives"]:
            out.append(f"> {_md(snippet(r['text']))}  \n> — `{r['input_path']}` row {r['row']}{times(r.get('rows'))}")
            out.append("")
    u = s["unclustered"]
    out += [
        "## Unclustered",
        "",
        f"{u['rows']:,} rows, {u['texts']:,} distinct texts. "
        f"Frequent words: {', '.join(_md(w) for w in words(u['keywords']))}",
        "",
    ]
    return "\n".join(out)
