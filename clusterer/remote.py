"""Send the clustering to a big-memory host as an RQ job.

The host runs, from a checkout of this repository::

    EMBEDFLEET_REDIS_URL=redis://HOST:6379/0 EMBEDFLEET_REDIS_PASSWORD=… \
        rq worker -c deploy.rq_settings -S json embedfleet-cluster

The job travels as JSON (RQ's JSON serializer, no pickle on the wire): the
configuration as a plain dict, the function by its dotted name. Paths are the
ones given on the command line; a worker whose storage is mounted elsewhere
sets ``EMBEDFLEET_DATA_ROOT`` (or the input/output roots) and the job's
roots are replaced by those. Progress lines are copied into the job's meta,
where the submitting side reads and prints them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rq import Queue, get_current_job
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from bus.redis_transport import connect
from bus.settings import RedisSettings, redact
from clusterer.config import ClusterConfig, roots_from_env
from clusterer.progress import Progress

JOB_FUNCTION = "clusterer.remote.run_job"
META_LOG = "progress"
MAX_META_LINES = 500
POLL_S = 1.0
RESULT_TTL_S = 7 * 24 * 3600

EXIT_FOR_ERROR = {"IncompleteRun": 3, "NothingToCluster": 4}


def rebase(cfg: ClusterConfig) -> ClusterConfig:
    """Replace the roots by the worker's own, when its environment names them."""
    env_in, env_out = roots_from_env()
    if env_out and cfg.out_dir is not None and cfg.out_dir.is_relative_to(cfg.output_root):
        cfg.out_dir = Path(env_out) / cfg.out_dir.relative_to(cfg.output_root)
    if env_in:
        cfg.input_root = Path(env_in)
    if env_out:
        cfg.output_root = Path(env_out)
    return cfg


def run_job(config: dict[str, Any]) -> dict[str, Any]:
    """What the RQ worker runs: the whole pipeline, progress into the job's meta."""
    from clusterer.pipeline import run

    job = get_current_job()
    lines: list[str] = []

    def sink(line: str) -> None:
        if job is None:
            return
        lines.append(line)
        job.meta[META_LOG] = lines[-MAX_META_LINES:]
        job.meta["lines"] = len(lines)
        job.save_meta()

    cfg = rebase(ClusterConfig.from_dict(config))
    summary = run(cfg, Progress(sink=sink))
    keep = ("points", "texts", "clusters", "noise", "noise_share", "complete", "seconds")
    return {**{k: summary[k] for k in keep}, "out": str(cfg.out)}


def _connection(url: str) -> Any:
    return connect(RedisSettings.from_url(url), timeout_s=30.0)


def enqueue(cfg: ClusterConfig, queue: str, timeout_s: int) -> Job:
    """Put the job on the queue; the Redis URL comes from ``--redis-url``."""
    if not cfg.redis_url:
        raise ValueError("--remote needs --redis-url (or EMBEDFLEET_REDIS_URL)")
    q = Queue(queue, connection=_connection(cfg.redis_url), serializer=JSONSerializer)
    config = cfg.to_dict()
    return q.enqueue(
        JOB_FUNCTION,
        config,
        job_timeout=timeout_s,
        result_ttl=RESULT_TTL_S,
        failure_ttl=RESULT_TTL_S,
        description=f"cluster {config['output_root']}",
    )


def follow(job: Job, queue: str, deadline_s: float, progress: Progress) -> int:
    """Print the job's progress until it ends; the exit code of the run."""
    shown = 0
    told_waiting = False
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        status = job.get_status(refresh=True)
        meta = job.get_meta(refresh=True)
        log, total = meta.get(META_LOG, []), int(meta.get("lines", 0))
        for line in log[max(0, len(log) - (total - shown)) :]:
            progress.say(f"remote {line}")
        shown = total
        if status == JobStatus.FINISHED:
            progress.say(f"remote job done: {job.return_value()}")
            return 0
        if status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
            return _failure(job, progress)
        if status == JobStatus.QUEUED and not told_waiting:
            progress.say(f"waiting for a worker on queue {queue} (rq worker -S json {queue})")
            told_waiting = True
        time.sleep(POLL_S)
    progress.say(f"gave up waiting after {deadline_s:.0f} s; job {job.id} goes on")
    return 5


def error_message(exc_text: str) -> str:
    """The exception line (and its message's continuation lines) of a traceback."""
    lines = exc_text.rstrip().splitlines()
    starts = [i for i, line in enumerate(lines) if line and not line[0].isspace() and not line.startswith("Traceback")]
    return "\n".join(lines[starts[-1] :]) if starts else (lines[-1] if lines else "")


def _failure(job: Job, progress: Progress) -> int:
    result = job.latest_result()
    text = redact(result.exc_string or "") if result is not None else ""
    message = error_message(text) or f"job {job.get_status()}"
    progress.say(f"remote job failed: {message}")
    for name, code in EXIT_FOR_ERROR.items():
        if message.split(":", 1)[0].endswith(name):
            return code
    return 5


def submit(cfg: ClusterConfig, queue: str, timeout_s: int, wait: bool, progress: Progress) -> int:
    """``--remote``: enqueue, then (unless ``--no-wait``) follow the job."""
    job = enqueue(cfg, queue, timeout_s)
    where = RedisSettings.from_url(cfg.redis_url or "").redacted()
    progress.say(f"enqueued clustering job {job.id} on queue {queue} at {where}")
    if not wait:
        print(job.id)
        return 0
    return follow(job, queue, timeout_s + 600, progress)
