"""``python -m clusterer neighbours``: the texts nearest a text, over every embedding of the run.

``python -m clusterer neighbours "some text"`` embeds the text with the Python
worker's model (``workers.st_embedder``, offline, from the PyPI model
package); ``--like PATH:ROW`` starts from a row of the run instead (an input
path as in ``clusters.parquet`` and its row), with no model at all. The
nearest distinct texts come from the index saved beside ``clusters.parquet``
(``clusterer.ann``), each printed with its cosine, cluster, rows, where it
first occurs and its text (read back from the input).

Exit codes: 0 found; 2 bad arguments; 4 no index (cluster first) or no such row.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bus.cli_options import TEXT_COLUMN_FLAGS, DefaultsHelpFormatter, add_root_options, roots
from clusterer.ann import load_index, search
from clusterer.outputs import CLUSTERS_FILE
from clusterer.progress import Progress
from clusterer.report_text import snippet
from clusterer.texts import fetch_texts

EXIT_MISSING = 4


class NotFound(Exception):
    """No index, or the row asked for is not in the run."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m clusterer neighbours",
        description=__doc__.splitlines()[0],
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument("text", nargs="?", help="the text to start from (embedded with the model)")
    p.add_argument("--like", metavar="PATH:ROW", help="start from this row of the run instead (input path and row)")
    p.add_argument("-k", type=int, default=10, help="texts to show (default %(default)s)")
    add_root_options(p, output_help="root holding clusters/")
    p.add_argument("--out", help="the clustering's directory (default: <output-root>/clusters)")
    p.add_argument(*TEXT_COLUMN_FLAGS, dest="text_column", default="text", help="text column of the inputs")
    p.add_argument("--model-dir", type=Path, help="model directory (default: the PyPI model package)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    return p


def embed(text: str, model_dir: Path | None) -> np.ndarray:
    """The text's unit embedding by the Python worker's model (loaded offline)."""
    from workers.st_embedder import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(model_dir, device="cpu", precision="fp32").encode([text]).embeddings


def row_vector(out: Path, index: Any, texts: pl.DataFrame, like: str) -> tuple[np.ndarray, int]:
    """The indexed vector of the text at ``PATH:ROW`` and its id."""
    path, _, row = like.rpartition(":")
    if not path or not row.isdigit():
        raise ValueError(f"--like wants PATH:ROW (an input path and a row number), not {like!r}")
    rows = pl.read_parquet(out / CLUSTERS_FILE, columns=["input_path", "row", "text_key"])
    hit = rows.filter((pl.col("input_path") == path) & (pl.col("row") == int(row)))
    if hit.is_empty():
        raise NotFound(f"{path} row {row} is not in {out / CLUSTERS_FILE}")
    key = hit["text_key"][0]
    ids = texts.with_row_index("id")
    match = (
        ids.filter(pl.col("text_key") == key)
        if key is not None
        else ids.filter((pl.col("input_path") == path) & (pl.col("row") == int(row)))
    )
    if match.is_empty():
        raise NotFound(f"{path} row {row} is not in the neighbour index (clustered with --no-index?)")
    at = int(match["id"][0])
    index.make_direct_map()
    return index.reconstruct(at)[None, :], at


def nearest(
    out: Path, input_root: Path, text_column: str, query: str | None, like: str | None, k: int, model: Path | None
) -> list[dict[str, Any]]:
    """The ``k`` nearest distinct texts, nearest first."""
    try:
        index, texts = load_index(out)
    except FileNotFoundError as e:
        raise NotFound(str(e)) from None
    skip = -1
    if like:
        vector, skip = row_vector(out, index, texts, like)
    else:
        vector = embed(query or "", model)
    ids, sims = search(index, vector, k + (1 if like else 0))
    found = [(int(i), float(s)) for i, s in zip(ids[0], sims[0], strict=True) if i >= 0 and i != skip][:k]
    picked = texts[[i for i, _ in found]].with_columns(cosine=pl.Series([s for _, s in found]))
    with_text = fetch_texts(input_root, picked, text_column, Progress(quiet=True))
    return [
        {
            "rank": n + 1,
            "cosine": round(r["cosine"], 4),
            "cluster": r["cluster"],
            "rows": r["rows"],
            "input_path": r["input_path"],
            "row": r["row"],
            "text": r["text"],
        }
        for n, r in enumerate(with_text.iter_rows(named=True))
    ]


def main(argv: list[str]) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if bool(a.text) == bool(a.like):
        parser.error("give a text or --like PATH:ROW (one of them)")
    where = roots(a)
    input_root, output_root = where.input, where.output
    if not input_root or (not output_root and not a.out):
        parser.error("say where the run is: --data-root, or --input-root and --output-root (or --out)")
    out = Path(a.out) if a.out else Path(str(output_root)) / "clusters"
    try:
        found = nearest(out, Path(input_root), a.text_column, a.text, a.like, a.k, a.model_dir)
    except ValueError as e:
        parser.error(str(e))
    except NotFound as e:
        print(f"clusterer neighbours: {e}", file=sys.stderr)
        return EXIT_MISSING
    for r in found:
        if a.json:
            print(json.dumps(r, ensure_ascii=False))
        else:
            print(
                f"{r['rank']:>3}  {r['cosine']:.3f}  cluster {r['cluster']:>4}  {r['rows']:>6,} rows  "
                f"{r['input_path']}:{r['row']}\n     {snippet(r['text'])[:200]}"
            )
    return 0
