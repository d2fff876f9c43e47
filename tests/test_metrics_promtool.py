"""``/metrics`` of a real run passes ``promtool check metrics`` (Debian's
``prometheus`` package, installed by ``make setup``), keeps every family
together, and has the job-duration histogram, failures by reason and
build_info; the Grafana dashboard in deploy/ uses only metrics that exist."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from bus.settings import RedisSettings
from manager import __version__
from manager.coordinator import Coordinator, CoordinatorOptions
from tests.support.fakes import FakeWorker

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "deploy" / "grafana" / "embedfleet.json"
FAST = CoordinatorOptions(poll_s=0.05, refresh_s=0.2, trim_every_s=0.2, state_every_s=0.2, registry_every_s=0.5)


def promtool() -> str:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool is not installed: run `make setup` (Debian package prometheus, in deploy/setup.sh)")
    return exe


@pytest.fixture(scope="module")
def scrape(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> str:
    """The /metrics text of a finished run: jobs done, two dead letters, a scan error."""
    from corpus.generate import generate_corpus

    redis.Redis.from_url(redis_url).flushdb()
    settings = RedisSettings.from_url(redis_url, namespace="prom")
    data = tmp_path_factory.mktemp("prom") / "data"
    paths = generate_corpus(data, suffixes=1, subreddits=2, files_per_subreddit=3, rows_per_file=10, seed=5)
    (paths[0].parent / "broken.parquet").write_bytes(b"PAR1 not parquet")
    bad = {str(p.relative_to(data)) for p in paths[:2]}

    def fail(job: Any) -> str | None:
        return f"{job.path}: invalid job message: bad field attempt: 0" if job.path in bad else None

    workers = [
        FakeWorker(settings, "py-a", kind="python", device="mps", job_s=0.05, fail=fail),
        FakeWorker(settings, "rs-b", kind="rust", device="cpu", job_s=0.02, fail=fail),
    ]
    co = Coordinator(settings, output_root=data, input_root=data, model="m@0123456789abcdef", options=FAST)
    api = co.serve_api(port=0)
    try:
        for w in workers:
            w.start()
        co.run()
        return httpx.get(f"{api.url}/metrics", timeout=10).text
    finally:
        for w in workers:
            w.stop()
        api.stop()


def test_promtool_finds_nothing_wrong(scrape: str) -> None:
    proc = subprocess.run(
        [promtool(), "check", "metrics"], input=scrape, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), proc.stdout + proc.stderr + scrape


def test_every_family_is_declared_once_and_kept_together(scrape: str) -> None:
    seen: list[str] = []
    types: dict[str, str] = {}
    for line in scrape.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name not in types, f"{name} declared twice"
            types[name] = kind
            continue
        if line.startswith("#") or not line:
            continue
        name = re.split(r"[{ ]", line, maxsplit=1)[0]
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types, f"{name} has no TYPE"
        if not seen or seen[-1] != family:
            assert family not in seen, f"samples of {family} are split by another family"
            seen.append(family)
    assert "microseconds" not in scrape
    for name, kind in types.items():
        assert name.endswith("_total") == (kind == "counter"), name


def test_histogram_failures_by_reason_and_build_info(scrape: str) -> None:
    assert f'embedfleet_build_info{{version="{__version__}"}} 1' in scrape
    assert "# TYPE embedfleet_job_duration_seconds histogram" in scrape
    assert re.search(r'embedfleet_job_duration_seconds_count\{class="python/mps"\} \d+', scrape)
    assert 'embedfleet_job_duration_seconds_bucket{class="rust/cpu",le="+Inf"}' in scrape
    assert 'embedfleet_run_failures_total{reason="invalid_job_message",source="worker"} 2' in scrape
    assert re.search(r'embedfleet_run_failures_total\{reason="[a-z0-9_]+",source="scan"\} 1\n', scrape)
    assert "# TYPE embedfleet_bus_jobs_total counter" in scrape and "# TYPE embedfleet_bus_jobs gauge" in scrape
    assert 'embedfleet_bus_jobs{state="dead"} 2' in scrape


def test_the_grafana_dashboard_uses_metrics_that_exist(scrape: str) -> None:
    board = json.loads(GRAFANA.read_text())
    assert board["title"] and board["panels"]
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    assert exprs
    families = {line.split(" ")[2] for line in scrape.splitlines() if line.startswith("# TYPE ")}
    # and those a finished run leaves out (the ETA exists while embedding)
    source = (ROOT / "manager" / "metrics.py").read_text()
    families |= {f"embedfleet_{n}" for n in re.findall(r'doc\.(?:add|histogram)\(\s*"([a-z_]+)"', source)}
    for expr in exprs:
        for name in re.findall(r"\bembedfleet_[a-z_]+", expr):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            assert name in families or base in families, f"{name} in the Grafana dashboard is not exported"
