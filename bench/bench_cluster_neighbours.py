"""Neighbour index (``clusterer.ann``): recall@10 against exact search at
100,000 points, and milliseconds a query at 1,000,000, one query at a time as
``python -m clusterer neighbours`` asks (the model's time to embed a query is
not included).

The vectors are planted clusters on the unit sphere (``clusterer.synthetic``,
200 clusters, cosine about 0.4 within one), harder for an index than real
sentence embeddings; queries are indexed vectors moved by a little noise.
The baseline is exact search (one matrix product) in the same run.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np

from bench.bench_cluster import _check

RECALL_N = 100_000
SPEED_N = 1_000_000
QUERIES = 500
LIMIT_MS = 50.0
LIMIT_RECALL = 0.95


def vectors(n: int, seed: int = 1) -> np.ndarray:
    from clusterer.synthetic import PlantedSpec, planted

    x, _ = planted(PlantedSpec(n=n, clusters=200, seed=seed, spread=1.2))
    return x


def queries(x: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q = x[rng.choice(len(x), QUERIES, replace=False)] + 0.05 * rng.standard_normal((QUERIES, x.shape[1]))
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def build(x: np.ndarray) -> tuple[Any, float]:
    from clusterer.ann import IndexBuilder

    t0 = time.perf_counter()
    builder = IndexBuilder(len(x), x.shape[1], seed=0)
    for lo in range(0, len(x), 32_768):
        builder.offer(lo, x[lo : lo + 32_768])
    builder.train()
    for lo in range(0, len(x), 32_768):
        builder.add(lo, x[lo : lo + 32_768])
    return builder.index, time.perf_counter() - t0


def one_at_a_time(index: Any, q: np.ndarray) -> tuple[np.ndarray, float]:
    from clusterer.ann import search

    t0 = time.perf_counter()
    found = np.vstack([search(index, q[i : i + 1], 10)[0] for i in range(len(q))])
    return found, 1000 * (time.perf_counter() - t0) / len(q)


def exact(x: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    found = np.vstack([np.argsort(-(x @ q[i]))[:10] for i in range(len(q))])
    return found, 1000 * (time.perf_counter() - t0) / len(q)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)]))


def run(smoke: bool = False) -> dict[str, Any]:
    n_recall, n_speed = (20_000, 50_000) if smoke else (RECALL_N, SPEED_N)
    x = vectors(n_recall)
    q = queries(x)
    truth, exact_ms = exact(x, q)
    index, build_s = build(x)
    found, ann_ms = one_at_a_time(index, q)
    r = recall(found, truth)
    rows = [
        [f"{n_recall:,}", "exact (numpy)", "", f"{exact_ms:.2f}", "1.000"],
        [f"{n_recall:,}", f"IVF{index.nlist},SQ8 nprobe {index.nprobe}", f"{build_s:.1f}", f"{ann_ms:.2f}", f"{r:.3f}"],
    ]
    del x, index
    big = vectors(n_speed, seed=2)
    big_index, big_build_s = build(big)
    _, big_ms = one_at_a_time(big_index, queries(big))
    rows.append(
        [
            f"{n_speed:,}",
            f"IVF{big_index.nlist},SQ8 nprobe {big_index.nprobe}",
            f"{big_build_s:.1f}",
            f"{big_ms:.2f}",
            "",
        ]
    )
    plan = [
        _check(f"recall@10 at {n_recall:,}", f">= {LIMIT_RECALL}", f"{r:.3f}", r >= LIMIT_RECALL),
        _check(f"ms a query at {n_speed:,}", f"<= {LIMIT_MS:.0f}", f"{big_ms:.2f}", big_ms <= LIMIT_MS),
    ]
    return {
        "title": "Clusterer: neighbour index" + (" (smoke)" if smoke else ""),
        "tables": [
            {
                "caption": "faiss-cpu inverted file, 8-bit codes, one query at a time, k = 10",
                "columns": ["vectors", "search", "build s", "ms / query", "recall@10"],
                "rows": rows,
            }
        ],
        "plan": plan,
        "notes": f"{QUERIES} queries; exact search is the baseline for recall, measured in the same run.",
    }


if __name__ == "__main__":
    print(json.dumps(run(smoke="--smoke" in sys.argv), indent=1))
