"""``python -m clusterer``: cluster every embedding of a run and write a report
(``python -m clusterer neighbours``: the texts nearest a text, ``clusterer.neighbours``).

Exit codes: 0 done; 2 bad arguments (or a run that needs --model); 3 the run is incomplete (refused);
4 nothing to cluster; 5 the remote job failed; 6 the bus is unreachable.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bus.cli_options import (
    SUBREDDITS_LIST_FLAGS,
    TEXT_COLUMN_FLAGS,
    DefaultsHelpFormatter,
    add_root_options,
    roots,
)
from bus.errors import BusUnavailable
from bus.settings import ENV_NAMESPACE, ENV_URL, RedisSettings
from clusterer.completeness import AmbiguousRun, IncompleteRun, NothingToCluster
from clusterer.config import DEFAULT_QUEUE, DEVICES, DTYPES, REDUCERS, ClusterConfig
from clusterer.progress import Progress

EXIT_INCOMPLETE, EXIT_EMPTY, EXIT_REMOTE, EXIT_BUS = 3, 4, 5, 6


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m clusterer", description=__doc__.splitlines()[0], formatter_class=DefaultsHelpFormatter
    )
    d = ClusterConfig(Path("."), Path("."))
    g = p.add_argument_group("data")
    add_root_options(g)
    g.add_argument("--out", help="result directory (default: <output-root>/clusters)")
    g.add_argument(
        *TEXT_COLUMN_FLAGS,
        dest="text_column",
        default=d.text_column,
        help="text column of the inputs (for keywords and examples)",
    )
    g.add_argument("--model", help="cluster the outputs of this model id (default: the only one found)")
    g.add_argument(
        *SUBREDDITS_LIST_FLAGS,
        dest="subreddits_list",
        metavar="FILE",
        help="checkpoint naming the subreddits (default: <input-root>/subreddits_list.json)",
    )
    g.add_argument("--allow-partial", action="store_true", help="cluster an incomplete run instead of refusing")
    g.add_argument(
        "--redis-url", default=os.environ.get(ENV_URL), help=f"also ask the bus for queued jobs (env {ENV_URL})"
    )
    g.add_argument(
        "--namespace",
        default=os.environ.get(ENV_NAMESPACE),
        help=f"bus key prefix (env {ENV_NAMESPACE}; default: embedfleet)",
    )
    m = p.add_argument_group("method")
    m.add_argument("--reducer", choices=REDUCERS, default=d.reducer, help="dimension reduction (default %(default)s)")
    m.add_argument("--pca-dims", type=int, default=d.pca_dims, help="PCA dimensions (default %(default)s)")
    m.add_argument("--dims", type=int, help="dimensions HDBSCAN runs in (default: 5 with UMAP, 10 with pca)")
    m.add_argument(
        "--umap-neighbors", type=int, default=d.umap_neighbors, help="UMAP n_neighbors (default %(default)s)"
    )
    m.add_argument(
        "--sample-size",
        type=int,
        default=d.sample_size,
        help="distinct texts HDBSCAN is fitted on (default %(default)s)",
    )
    m.add_argument(
        "--min-cluster-size",
        type=int,
        help="smallest cluster, in distinct texts (default 0.5%% of the run's distinct texts, at least 20)",
    )
    m.add_argument("--min-samples", type=int, help="HDBSCAN min_samples on the sample (default: its min cluster size)")
    m.add_argument("--selection", choices=("eom", "leaf"), default=d.selection, help="HDBSCAN cluster selection")
    m.add_argument(
        "--outliers",
        choices=("assign", "keep"),
        default=d.outliers,
        help="HDBSCAN's noise points: assign to the nearest cluster, flagged outlier (default), or keep as -1",
    )
    m.add_argument("--assign-neighbors", type=int, default=d.assign_neighbors, help="neighbours voting for each point")
    m.add_argument(
        "--seed",
        type=int,
        default=d.seed,
        help="seed of the sample, the PCA and the neighbour index; UMAP runs unseeded "
        "(a fixed seed makes it single-threaded) (default %(default)s)",
    )
    m.add_argument("--device", choices=DEVICES, default=d.device, help="cuda needs RAPIDS cuML (default %(default)s)")
    m.add_argument("--dtype", choices=DTYPES, default=d.dtype, help="storage of the reduced vectors")
    m.add_argument(
        "--renumber",
        action="store_true",
        help="number clusters from the largest down (default: keep the ids of the previous run in --out)",
    )
    u = p.add_argument_group("updates")
    u.add_argument(
        "--update",
        action="store_true",
        help="label the outputs new since the last clustering in --out with its fit, without refitting",
    )
    u.add_argument("--refit", action="store_true", help="with --update: refit anyway (ids that match are kept)")
    u.add_argument(
        "--refit-threshold",
        type=float,
        default=d.refit_threshold,
        help="with --update: refit when more than this share of the new texts falls outside every cluster "
        "(default %(default)s)",
    )
    r = p.add_argument_group("report")
    r.add_argument(
        "--no-index",
        dest="index",
        action="store_false",
        help="skip the neighbour index (`python -m clusterer neighbours` needs it)",
    )
    r.add_argument("--top-words", type=int, default=d.top_words, help="keywords per cluster")
    r.add_argument("--representatives", type=int, default=d.representatives, help="texts shown per cluster")
    r.add_argument(
        "--map-points",
        type=int,
        default=d.map_points,
        help="points on the map: a sample stratified by cluster, at most 100,000 (0: no map)",
    )
    q = p.add_argument_group("remote (RQ)")
    q.add_argument(
        "--remote", action="store_true", help="enqueue on RQ for a host running `rq worker -S json embedfleet-cluster`"
    )
    q.add_argument("--queue", default=DEFAULT_QUEUE, help="RQ queue (default %(default)s)")
    q.add_argument("--no-wait", action="store_true", help="with --remote: return once enqueued")
    q.add_argument("--timeout", type=int, default=6 * 3600, help="with --remote: job timeout in seconds")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    return p


def config_from_args(a: argparse.Namespace) -> ClusterConfig:
    r = roots(a)
    input_root, output_root = r.input, r.output
    if not input_root or not output_root:
        raise ValueError("say where the data is: --data-root, or --input-root and --output-root")
    if a.remote and not a.redis_url:
        raise ValueError("--remote needs --redis-url (or EMBEDFLEET_REDIS_URL)")
    dims = a.dims if a.dims is not None else (10 if a.reducer == "pca" else 5)
    cfg = ClusterConfig(
        input_root=Path(input_root).resolve(),
        output_root=Path(output_root).resolve(),
        out_dir=Path(a.out).resolve() if a.out else None,
        text_column=a.text_column,
        model=a.model,
        allow_partial=a.allow_partial,
        redis_url=a.redis_url,
        namespace=a.namespace,
        reducer=a.reducer,
        pca_dims=a.pca_dims,
        dims=dims,
        umap_neighbors=a.umap_neighbors,
        sample_size=a.sample_size,
        min_cluster_size=a.min_cluster_size,
        min_samples=a.min_samples,
        selection=a.selection,
        outliers=a.outliers,
        assign_neighbors=a.assign_neighbors,
        seed=a.seed,
        device=a.device,
        dtype=a.dtype,
        top_words=a.top_words,
        representatives=a.representatives,
        map_points=a.map_points,
        renumber=a.renumber,
        index=a.index,
        update=a.update,
        refit=a.refit,
        refit_threshold=a.refit_threshold,
        subreddits_list=Path(a.subreddits_list) if a.subreddits_list else None,
    )
    cfg.validate()
    return cfg


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["neighbours"]:
        from clusterer.neighbours import main as neighbours

        return neighbours(args[1:])
    argv = args
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        cfg = config_from_args(a)
    except ValueError as e:
        parser.error(str(e))
    if cfg.redis_url:
        try:  # a malformed URL is a usage error before any work (never repeating the URL: it may hold a password)
            RedisSettings.from_url(cfg.redis_url)
        except ValueError as e:
            parser.error(f"--redis-url: {e}")
    progress = Progress(quiet=a.quiet)
    try:
        if a.remote:
            from clusterer.remote import submit

            return submit(cfg, a.queue, a.timeout, wait=not a.no_wait, progress=progress)
        from clusterer.pipeline import run

        run(cfg, progress)
        return 0
    except IncompleteRun as e:
        print(f"clusterer: refused: {e}", file=sys.stderr)
        return EXIT_INCOMPLETE
    except NothingToCluster as e:
        print(f"clusterer: {e}", file=sys.stderr)
        return EXIT_EMPTY
    except AmbiguousRun as e:
        print(f"clusterer: {e}", file=sys.stderr)
        return 2
    except BusUnavailable as e:
        print(f"clusterer: {e}", file=sys.stderr)
        return EXIT_BUS
