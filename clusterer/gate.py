"""Decide what a run may cluster, refusing an incomplete run unless asked.

The outputs are catalogued, compared with the inputs, and (given a Redis
URL) the bus is asked whether jobs are still outstanding. A run that is not
complete is refused with the list of what is missing, unless
``--allow-partial``; a run with nothing embedded at all is always an error.
"""

from __future__ import annotations

from clusterer.bus_check import outstanding_jobs
from clusterer.catalog import load_catalog
from clusterer.completeness import (
    CHECKPOINT_NAME,
    Completeness,
    IncompleteRun,
    NothingToCluster,
    check,
    choose_model,
    read_checkpoint,
)
from clusterer.config import ClusterConfig
from clusterer.progress import Progress


def local_model_id() -> str | None:
    """The model id of the weights installed here, if any."""
    try:
        from models.source import model_id

        return model_id()
    except (ImportError, OSError):
        return None


def open_run(cfg: ClusterConfig, progress: Progress) -> Completeness:
    """The usable outputs of the run, or ``IncompleteRun`` / ``NothingToCluster``."""
    if not cfg.input_root.is_dir():
        raise NothingToCluster(f"input root {cfg.input_root} does not exist (texts are joined from it)")
    catalog = load_catalog(cfg.output_root)
    progress.say(f"found {len(catalog.parts):,} embedding outputs under {cfg.output_root / 'embeddings'}")
    if not catalog.parts:
        raise NothingToCluster(
            f"nothing to cluster: no embedding outputs under {cfg.output_root / 'embeddings'}"
            + (f" ({len(catalog.broken)} unreadable)" if catalog.broken else "")
            + "; run the embedding first (make run / python -m manager) or check --output-root"
        )
    model = choose_model(catalog, cfg.model, local_model_id() if len(catalog.models) > 1 else None)
    checkpoint = cfg.subreddits_list or cfg.input_root / CHECKPOINT_NAME
    result = check(cfg.input_root, catalog, model, read_checkpoint(checkpoint))
    if cfg.redis_url:
        bus = outstanding_jobs(cfg.redis_url, cfg.namespace)
        result.queued_jobs, result.dead_jobs = bus.queued, bus.dead
        result.explain(bus.reasons)
    progress.say(
        f"{result.inputs:,} inputs, {len(result.usable):,} usable outputs ({result.rows:,} rows, model {model}); "
        f"{len(result.missing):,} incomplete"
    )
    if result.rows == 0:
        orphans = (
            f"\n  - {len(result.ignored)} output(s) match no input under {cfg.input_root / 'chains'}"
            " (wrong --input-root?)"
            if result.ignored
            else ""
        )
        raise NothingToCluster(
            f"nothing to cluster: no usable embeddings of model {model}\n{result.problems()}{orphans}"
        )
    if not result.complete:
        if not cfg.allow_partial:
            raise IncompleteRun(
                "the embedding run is incomplete; finish it, or cluster what is there with --allow-partial:\n"
                + result.problems()
            )
        progress.say("warning: clustering a partial run (--allow-partial):\n" + result.problems(limit=5))
    return result
