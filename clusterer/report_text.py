"""What both reports say, as plain lines (Markdown code spans and bold only):
the header, a partial run's failed inputs, names of clusters and topics, and
the topic tree walked from the top. Texts come from the corpus (Reddit and
the like): each renderer escapes them, and they are shortened here to
``SNIPPET_CHARS``.
"""

from __future__ import annotations

from typing import Any

SNIPPET_CHARS = 300


def snippet(text: str | None) -> str:
    """One line, at most ``SNIPPET_CHARS`` characters."""
    if text is None:
        return "(text unavailable)"
    flat = " ".join(text.split())
    if not flat:
        return "(empty text)"
    return flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 1].rstrip() + "…"


def words(keywords: list[Any], n: int = 10) -> list[str]:
    return [str(k[0]) for k in keywords[:n]]


def names(c: dict[str, Any], n: int = 10) -> list[str]:
    """A cluster's keywords; the frequent texts that stand in for them are quoted."""
    found = words(c["keywords"], n)
    return [f"“{w}”" for w in found] if c.get("keywords_from") == "texts" else found


def share(part: int, whole: int) -> str:
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


def header_lines(s: dict[str, Any]) -> list[str]:
    p = s["parameters"]
    rows, texts = s["points"], s["texts"]
    lines = [
        f"{rows:,} rows holding {texts:,} distinct texts ({share(rows - texts, rows)} of rows repeat a text) "
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
        *tree_line(s),
        *ids_line(s),
        *update_line(s),
    ]
    return lines


def update_line(s: dict[str, Any]) -> list[str]:
    u = s.get("update")
    if not u:
        return []
    return [
        f"**Update**: {u['new_texts']:,} distinct texts ({u['new_rows']:,} rows) new since the last clustering were "
        f"labelled with its fit, without refitting; {u['outside_texts']:,} ({100 * u['outside_share']:.1f}%) fell "
        f"outside every cluster (a refit happens past {100 * u['refit_threshold']:.0f}%, or with `--refit`). "
        "Earlier texts keep their clusters."
    ]


def ids_line(s: dict[str, Any]) -> list[str]:
    ids = s.get("ids")
    if not ids:
        return []
    return [
        f"Cluster ids follow the previous run's: {ids['kept']:,} cluster(s) kept their id, {ids['new']:,} are new, "
        f"{len(ids['retired']):,} of the previous {ids['previous_clusters']:,} retired (`--renumber` numbers afresh)."
    ]


def tree_line(s: dict[str, Any]) -> list[str]:
    nodes = (s.get("topic_tree") or {}).get("nodes", [])
    if not nodes:
        return []
    themes = sum(1 for n in nodes if n["level"] == 1)
    return [
        f"Topic tree: {themes:,} themes, {len(nodes) - themes:,} topics, {s['clusters']:,} clusters "
        "(cluster centroids merged by average linkage; `level1` and `level2` in clusters.parquet)."
    ]


PARTIAL_LISTED = 50
"""Failed inputs listed at the top of a partial run's report (all are in the summary JSON, up to 200)."""


def partial_notice(s: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """A partial run's warning and its failed inputs, each with its reason (empty for a complete run)."""
    if s.get("complete", True):
        return "", []
    failed = s.get("failed_inputs") or [{"path": m, "reason": ""} for m in s.get("missing", [])]
    count = int(s.get("failed_count", len(failed)))
    head = (
        f"**Partial run**: {count:,} input(s) are not clustered; the clusters below cover the "
        f"{s['outputs']:,} outputs that were embedded."
    )
    if s.get("queued_jobs"):
        head += f" {s['queued_jobs']:,} job(s) were still queued."
    items = [(str(f["path"]), str(f["reason"])) for f in failed[:PARTIAL_LISTED]]
    if count > len(items):
        items.append(("...", f"and {count - len(items):,} more (see clusters_summary.json)"))
    return head, items


def times(rows: object) -> str:
    return f" · {rows:,} rows" if isinstance(rows, int) and rows > 1 else ""


def node_name(node: dict[str, Any]) -> str:
    """``Theme 0`` (level 1) or ``Topic 3`` (level 2)."""
    return f"{'Theme' if node['level'] == 1 else 'Topic'} {node['id']}"


def sizes(item: dict[str, Any]) -> str:
    return f"{item['rows']:,} rows, {item['texts']:,} distinct texts"


def tree_walk(s: dict[str, Any]) -> list[tuple[int, str, dict[str, Any]]]:
    """The topic tree from the top, depth first: ``(depth, kind, item)`` with ``kind``
    ``theme``, ``topic`` or ``cluster`` (a cluster item is its entry in ``cluster_list``)."""
    tree = s.get("topic_tree") or {"nodes": []}
    themes = [n for n in tree["nodes"] if n["level"] == 1]
    topics = {n["id"]: n for n in tree["nodes"] if n["level"] == 2}
    clusters = {c["id"]: c for c in s["cluster_list"]}
    out: list[tuple[int, str, dict[str, Any]]] = []
    for theme in themes:
        out.append((0, "theme", theme))
        for t in theme["children"]:
            out.append((1, "topic", topics[t]))
            out.extend((2, "cluster", clusters[c]) for c in topics[t]["children"] if c in clusters)
    return out
