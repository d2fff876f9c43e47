"""The report a person reads: ``report.md`` and ``report.html``, both made
from ``clusters_summary.json`` alone (a remote run's summary renders the same).

Texts come from the corpus (Reddit and the like), so they are escaped in both
formats and shortened to ``SNIPPET_CHARS``.
"""

from __future__ import annotations

import html
import re
from typing import Any

SNIPPET_CHARS = 300

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+|!~])")


def snippet(text: str | None) -> str:
    """One line, at most ``SNIPPET_CHARS`` characters."""
    if text is None:
        return "(text unavailable)"
    flat = " ".join(text.split())
    if not flat:
        return "(empty text)"
    return flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 1].rstrip() + "…"


def _md(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", text)


def _words(keywords: list[Any], n: int = 10) -> list[str]:
    return [str(k[0]) for k in keywords[:n]]


def _share(part: int, whole: int) -> str:
    return f"{100 * part / max(whole, 1):.1f}%"


def _identity_lines(s: dict[str, Any]) -> list[str]:
    ident = s["identity"]
    if not ident["rows_by_vector"]:
        return []
    return [
        f"**Texts unavailable**: the texts of {len(ident['unreadable_inputs']):,} output(s) "
        f"({ident['rows_by_vector']:,} rows) could not be read from the inputs; those rows were grouped by "
        f"identical embedding vectors instead ({ident['texts_by_vector']:,} distinct vectors, no `text_key`)."
    ]


def _header_lines(s: dict[str, Any]) -> list[str]:
    p = s["parameters"]
    rows, texts = s["points"], s["texts"]
    lines = [
        f"{rows:,} rows holding {texts:,} distinct texts ({_share(rows - texts, rows)} of rows repeat a text) "
        f"from {s['outputs']:,} output files, model `{s['model']}`.",
        "Clusters are fitted on distinct texts (each counted once, however often it repeats); every row takes "
        "the label of its text (`text_key` and `multiplicity` in clusters.parquet).",
        *_identity_lines(s),
        f"{s['clusters']:,} clusters; {s['noise']:,} rows ({100 * s['noise_share']:.1f}%), "
        f"{s['noise_texts']:,} distinct texts, unclustered.",
        *(
            [
                f"{s['outliers']:,} rows ({100 * s['outliers_share']:.1f}%; {s['outliers_texts']:,} distinct texts) "
                "lie in no dense region and joined their nearest cluster (`outlier` in clusters.parquet; "
                "`--outliers keep` leaves them unclustered)."
            ]
            if s["parameters"]["outliers"] == "assign" and s["outliers"]
            else []
        ),
        f"Reduction: {p['reducer']} (PCA {p['pca_dims']} dims keeping {100 * p['pca_kept_variance']:.0f}% of the "
        f"variance; HDBSCAN in {p['dims']} dims) on {p['backend']}; HDBSCAN fitted on {p['sample']:,} distinct "
        f"texts (min cluster size {p['min_cluster_size']:,} texts, {p['sample_min_cluster_size']} in the sample; "
        f"min samples {p['min_samples']}), every other text assigned by its {p['assign_neighbors']} nearest "
        "sample neighbours.",
    ]
    if not s["complete"]:
        lines.append(f"**Partial run**: {len(s['missing'])} input(s) incomplete (see the summary JSON).")
    return lines


def _times(rows: object) -> str:
    return f" · {rows:,} rows" if isinstance(rows, int) and rows > 1 else ""


def render_markdown(s: dict[str, Any]) -> str:
    out = ["# Clusters", "", *(f"{line}  " for line in _header_lines(s)), ""]
    if s.get("map"):
        out += [f"![2-D map of the clusters]({s['map']})", ""]
    out += ["| cluster | rows | share | distinct texts | top keywords |", "|---:|---:|---:|---:|---|"]
    for c in s["cluster_list"]:
        words = ", ".join(_md(w) for w in _words(c["keywords"]))
        out.append(
            f"| [{c['id']}](#cluster-{c['id']}) | {c['rows']:,} | {100 * c['share']:.2f}% | {c['texts']:,} | {words} |"
        )
    out.append("")
    for c in s["cluster_list"]:
        out += [f"## Cluster {c['id']}", ""]
        out.append(
            f"{c['rows']:,} rows ({100 * c['share']:.2f}%), {c['texts']:,} distinct texts, "
            f"mean membership {c['mean_probability']:.2f}.  "
        )
        out += [f"Keywords: {', '.join(_md(w) for w in _words(c['keywords']))}", ""]
        for r in c["representatives"]:
            out.append(f"> {_md(snippet(r['text']))}  \n> — `{r['input_path']}` row {r['row']}{_times(r.get('rows'))}")
            out.append("")
    u = s["unclustered"]
    out += [
        "## Unclustered",
        "",
        f"{u['rows']:,} rows, {u['texts']:,} distinct texts. "
        f"Frequent words: {', '.join(_md(w) for w in _words(u['keywords']))}",
        "",
    ]
    return "\n".join(out)


CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%;border:1px solid #ddd}
blockquote{margin:.5em 0;padding:.3em .8em;border-left:3px solid #9ab;background:#f6f8fa}
.src{color:#667;font-size:.85em}.kw{color:#245}.warn{background:#fff3cd;padding:.5em}
"""


def _inline_html(line: str) -> str:
    """Escaped header line with its Markdown code spans and bold made HTML."""
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(line))
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)


def render_html(s: dict[str, Any]) -> str:
    e = html.escape
    head = "".join(f"<p>{_inline_html(line)}</p>" for line in _header_lines(s))
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>Clusters</title><style>{CSS}</style>"]
    parts.append(f"</head><body><h1>Clusters</h1>{head}")
    if s.get("map"):
        parts.append(f'<p><img src="{e(s["map"])}" alt="2-D map of the clusters"></p>')
    parts.append(
        "<table><tr><th>cluster</th><th>rows</th><th>share</th><th>distinct texts</th><th>top keywords</th></tr>"
    )
    for c in s["cluster_list"]:
        words = e(", ".join(_words(c["keywords"])))
        parts.append(
            f'<tr><td><a href="#c{c["id"]}">{c["id"]}</a></td><td class=n>{c["rows"]:,}</td>'
            f"<td class=n>{100 * c['share']:.2f}%</td><td class=n>{c['texts']:,}</td><td class=kw>{words}</td></tr>"
        )
    parts.append("</table>")
    for c in s["cluster_list"]:
        parts.append(f'<h2 id="c{c["id"]}">Cluster {c["id"]}</h2>')
        parts.append(
            f"<p>{c['rows']:,} rows ({100 * c['share']:.2f}%), {c['texts']:,} distinct texts, "
            f"mean membership {c['mean_probability']:.2f}. "
            f"Keywords: <span class=kw>{e(', '.join(_words(c['keywords'])))}</span></p>"
        )
        for r in c["representatives"]:
            parts.append(
                f"<blockquote>{e(snippet(r['text']))}<br><span class=src>{e(str(r['input_path']))} "
                f"row {r['row']}{e(_times(r.get('rows')))}</span></blockquote>"
            )
    u = s["unclustered"]
    parts.append(
        f"<h2>Unclustered</h2><p>{u['rows']:,} rows, {u['texts']:,} distinct texts. "
        f"Frequent words: {e(', '.join(_words(u['keywords'])))}</p>"
    )
    parts.append("</body></html>\n")
    return "\n".join(parts)
