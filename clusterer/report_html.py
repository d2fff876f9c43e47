"""``report.html``: one self-contained page, readable offline from ``file://``.

Everything is inside the file: the style, the script (``clusterer.report_assets``,
hand-written canvas code with no library) and the data, as JSON in a
``<script type="application/json">`` element that the script parses. The page
makes no request at all, not even for ``map.png`` (it is linked, not
embedded). Without script the page still reads: the topic tree, the table and
every cluster's texts are plain HTML; the script adds the explorer above
them: a zoomable map of the (stratified) sample of distinct texts, hover for
a text, search, and a side panel for a clicked cluster and the tree.

Every text from the corpus is escaped here, or set with ``textContent`` by the
script; the JSON has ``<``, ``>`` and ``&`` escaped, so no text can close its
element.
"""

from __future__ import annotations

import html
import re
from typing import Any

from clusterer.mapview import inline_json
from clusterer.report_assets import CSS, SCRIPT
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

e = html.escape


def _inline_html(line: str) -> str:
    """Escaped header line with its Markdown code spans and bold made HTML."""
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", e(line))
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)


def _keywords(item: dict[str, Any], n: int = 5) -> str:
    return e(", ".join(names(item, n)))


def tree_html(s: dict[str, Any]) -> str:
    """The topic tree as nested ``<details>`` (themes open); clusters link to their section."""
    out: list[str] = []
    depth_open = -1
    for depth, kind, item in tree_walk(s):
        while depth_open >= depth:
            out.append("</ul></details></li>")
            depth_open -= 1
        if kind == "cluster":
            out.append(
                f'<li class=leaf data-cluster="{item["id"]}"><a href="#c{item["id"]}">Cluster {item["id"]}</a>'
                f" <span class=size>{e(sizes(item))}</span> <span class=kw>{_keywords(item)}</span></li>"
            )
            continue
        node = f"{item['level']}:{item['id']}"
        out.append(
            f'<li><details{" open" if kind == "theme" else ""}><summary data-node="{node}">'
            f"<b>{e(node_name(item))}</b> <span class=size>{e(sizes(item))}</span> "
            f"<span class=kw>{_keywords(item)}</span></summary><ul>"
        )
        depth_open = depth
    while depth_open >= 0:
        out.append("</ul></details></li>")
        depth_open -= 1
    return f"<ul class=tree id=tree>{''.join(out)}</ul>" if out else ""


def _partial_html(s: dict[str, Any]) -> str:
    notice, failed = partial_notice(s)
    if not notice:
        return ""
    rows = "".join(f"<li><code>{e(p)}</code>: {e(snippet(w))}</li>" for p, w in failed)
    return f"<div class=warn id=partial><p>{_inline_html(notice)}</p><ul>{rows}</ul></div>"


def _sample_note(page: dict[str, Any]) -> str:
    shown, total = page["shown"], page["total"]
    if not page["stratified"]:
        return f"All {total:,} distinct texts are on the map."
    return (
        f"The map shows {shown:,} of {total:,} distinct texts: a stratified sample (every cluster in proportion "
        "to its size, and at least 30 points of each, all of a smaller one). Search looks in these texts."
    )


def explorer_html(page: dict[str, Any], tree: str) -> str:
    return (
        "<section id=explorer><div id=mapcol><div class=toolbar>"
        '<input id=search type=search placeholder="Search texts and keywords" autocomplete=off>'
        "<span id=search-status></span><span class=spacer></span>"
        '<button id=zoom-in title="Zoom in">+</button><button id=zoom-out title="Zoom out">−</button>'
        '<button id=zoom-reset title="Show everything">reset</button></div>'
        '<div id=mapbox><canvas id=map aria-label="2-D map of the distinct texts"></canvas>'
        "<div id=tip hidden></div></div>"
        f"<p class=note id=sample-note>{e(_sample_note(page))} Scroll or the buttons zoom, drag pans, a click opens "
        "a cluster.</p></div>"
        "<aside id=side><div id=detail><p class=note>Click a point, a cluster or a search hit to see it here.</p></div>"
        f"<div id=hits></div><h2>Topic tree</h2>{tree}</aside></section>"
    )


def _table(s: dict[str, Any]) -> str:
    rows = [
        "<table id=clusters><tr><th>cluster</th><th>theme</th><th>topic</th><th>rows</th><th>share</th>"
        "<th>distinct texts</th><th>top keywords</th></tr>"
    ]
    for c in s["cluster_list"]:
        rows.append(
            f'<tr data-cluster="{c["id"]}"><td><a href="#c{c["id"]}">{c["id"]}</a></td>'
            f"<td class=n>{c.get('level1', '')}</td><td class=n>{c.get('level2', '')}</td>"
            f"<td class=n>{c['rows']:,}</td><td class=n>{100 * c['share']:.2f}%</td><td class=n>{c['texts']:,}</td>"
            f"<td class=kw>{_keywords(c, 10)}</td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def _sections(s: dict[str, Any]) -> list[str]:
    parts = []
    for c in s["cluster_list"]:
        label = "Frequent texts" if c.get("keywords_from") == "texts" else "Keywords"
        parts.append(
            f'<h2 id="c{c["id"]}">Cluster {c["id"]}</h2><p>{c["rows"]:,} rows ({100 * c["share"]:.2f}%), '
            f"{c['texts']:,} distinct texts, mean membership {c['mean_probability']:.2f}; theme {c.get('level1')}, "
            f"topic {c.get('level2')}. {label}: <span class=kw>{_keywords(c, 10)}</span></p>"
        )
        for r in c["representatives"]:
            parts.append(
                f"<blockquote>{e(snippet(r['text']))}<br><span class=src>{e(str(r['input_path']))} "
                f"row {r['row']}{e(times(r.get('rows')))}</span></blockquote>"
            )
    u = s["unclustered"]
    parts.append(
        f"<h2>Unclustered</h2><p>{u['rows']:,} rows, {u['texts']:,} distinct texts. "
        f"Frequent words: {e(', '.join(words(u['keywords'])))}</p>"
    )
    return parts


def page_json(s: dict[str, Any], page: dict[str, Any] | None) -> str:
    """What the script needs: the clusters (sizes, keywords, exemplars, tree place), the tree, the points."""
    clusters = [
        {
            "id": c["id"],
            "rows": c["rows"],
            "texts": c["texts"],
            "share": c["share"],
            "keywords": names(c, 10),
            "level1": c.get("level1"),
            "level2": c.get("level2"),
            "exemplars": [{"text": snippet(r["text"]), "rows": r.get("rows", 1)} for r in c["representatives"]],
        }
        for c in s["cluster_list"]
    ]
    nodes = [
        {"level": n["level"], "id": n["id"], "rows": n["rows"], "texts": n["texts"], "keywords": names(n, 5)}
        for n in (s.get("topic_tree") or {}).get("nodes", [])
    ]
    return inline_json({"clusters": clusters, "nodes": nodes, "points": page})


def render_html(s: dict[str, Any], page: dict[str, Any] | None = None) -> str:
    """The page; ``page`` is the map's points (``clusterer.mapview.page_data``), None for no map."""
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1"><title>Clusters</title>'
        f"<style>{CSS}</style></head><body><h1>Clusters</h1>",
        _partial_html(s),
        "".join(f"<p>{_inline_html(line)}</p>" for line in header_lines(s)),
    ]
    tree = tree_html(s)
    if page is not None:
        parts.append(explorer_html(page, tree))
    elif tree:
        parts.append(f"<h2>Topic tree</h2>{tree}")
    if s.get("map"):
        parts.append(f'<p class=note>A static picture of the map: <a href="{e(s["map"])}">{e(s["map"])}</a>.</p>')
    parts.append(_table(s))
    parts.extend(_sections(s))
    parts.append(f'<script type="application/json" id=report-data>{page_json(s, page)}</script>')
    if page is not None:
        parts.append(f"<script>{SCRIPT}</script>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
