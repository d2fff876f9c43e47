"""``--remote``: the clustering travels as a JSON RQ job to a real
``rq worker --burst`` subprocess on a real redis-server."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from rq import Queue
from rq.job import JobStatus
from rq.serializers import JSONSerializer

from bus.messages import output_path
from clusterer.cli import EXIT_INCOMPLETE, main
from clusterer.config import DEFAULT_QUEUE
from clusterer.progress import Progress
from clusterer.remote import follow
from clusterer.synthetic import PlantedSpec, planted, texts_for, write_run

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--reducer", "pca", "--map-points", "0", "-q", "--remote", "--no-wait"]


def make_run(root: Path) -> list[str]:
    x, labels = planted(PlantedSpec(n=900, clusters=3, seed=11, noise_share=0.0))
    return write_run(root, x, texts_for(labels, 11), files=3)


def burst_worker(redis_url: str) -> subprocess.CompletedProcess[str]:
    """One ``rq worker --burst`` run: it drains the queue and exits."""
    rq = Path(sys.executable).parent / "rq"
    cmd = [str(rq), "worker", "-S", "json", "--burst", "--url", redis_url, DEFAULT_QUEUE]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def only_job(redis_client: redis.Redis) -> Queue:
    return Queue(DEFAULT_QUEUE, connection=redis_client, serializer=JSONSerializer)


def test_remote_job_runs_on_an_rq_worker(tmp_path: Path, redis_url: str, redis_client: redis.Redis) -> None:
    make_run(tmp_path)
    assert main(["--data-root", str(tmp_path), "--redis-url", redis_url, *ARGS]) == 0
    q = only_job(redis_client)
    [job_id] = q.job_ids
    job = q.fetch_job(job_id)
    assert job is not None and job.get_status() == JobStatus.QUEUED
    done = burst_worker(redis_url)
    assert done.returncode == 0, done.stderr
    assert job.get_status(refresh=True) == JobStatus.FINISHED
    result = job.return_value()
    assert isinstance(result, dict)
    assert result["points"] == 900 and result["clusters"] >= 2
    assert (tmp_path / "clusters" / "clusters.parquet").exists()
    assert (tmp_path / "clusters" / "report.html").exists()
    lines = io.StringIO()
    assert follow(job, DEFAULT_QUEUE, 30, Progress(stream=lines)) == 0
    shown = lines.getvalue()
    assert "remote [cluster" in shown and "writing clusters.parquet" in shown
    assert "remote job done" in shown


def test_remote_refusal_comes_back_as_the_exit_code(tmp_path: Path, redis_url: str, redis_client: redis.Redis) -> None:
    rels = make_run(tmp_path)
    (tmp_path / output_path(rels[0], None)).unlink()
    assert main(["--data-root", str(tmp_path), "--redis-url", redis_url, *ARGS]) == 0
    [job_id] = only_job(redis_client).job_ids
    burst_worker(redis_url)
    job = only_job(redis_client).fetch_job(job_id)
    assert job is not None and job.get_status(refresh=True) == JobStatus.FAILED
    lines = io.StringIO()
    assert follow(job, DEFAULT_QUEUE, 30, Progress(stream=lines)) == EXIT_INCOMPLETE
    assert "IncompleteRun" in lines.getvalue() and "no output" in lines.getvalue()


def test_remote_needs_a_redis_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EMBEDFLEET_REDIS_URL", raising=False)
    make_run(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["--data-root", str(tmp_path), *ARGS])
    assert e.value.code == 2


def test_a_malformed_redis_url_is_a_usage_error_without_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_run(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["--data-root", str(tmp_path), *ARGS, "--redis-url", "http://:hunter2@127.0.0.1:1/0"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err and "hunter2" not in err
    assert (
        err.strip()
        .splitlines()[-1]
        .endswith("error: --redis-url: unsupported Redis URL scheme 'http' (use redis://, rediss:// or unix://)")
    )
