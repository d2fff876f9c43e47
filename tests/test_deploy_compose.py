"""``deploy/docker-compose.yml``: its configuration, and the whole cluster.

The configuration tests need only the Compose tool. The cluster test
(marked ``docker``) builds the images (``deploy/docker/build-images.sh``),
brings the cluster up on a sample corpus, kills a worker container in the
middle of a job, restarts the Redis container, and checks that the run
completes with every output present exactly once and that ``docker compose
down`` leaves the data volume intact. It is skipped, with a message, where
no Docker Engine answers.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from bus.messages import output_path
from tests.support.procs import free_port
from tests.support.rust_worker import rust_worker_binary

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "deploy" / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "deploy" / "compose.env.example"
SERVICES = {"redis", "manager", "worker-python", "worker-rust"}
ON_DEMAND = {"cluster"}
"""Services under a Compose profile: started only when named (``run --rm cluster``)."""
WORKERS = ("worker-python", "worker-rust")
BUILD_TIMEOUT_S = 3600
RUN_TIMEOUT_S = 900


def compose_command() -> list[str] | None:
    """``docker compose`` (v2) where the plugin is installed, else ``docker-compose``."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    exe = shutil.which("docker-compose")
    return [exe] if exe else None


def engine_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=120, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


COMPOSE = compose_command()
needs_compose = pytest.mark.skipif(
    COMPOSE is None, reason="no Docker Compose tool here (docker compose / docker-compose)"
)


def config_of(env: dict[str, str], *extra: str) -> dict[str, Any]:
    assert COMPOSE is not None
    proc = subprocess.run(
        [*COMPOSE, "-f", str(COMPOSE_FILE), *extra, "config"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    data = yaml.safe_load(proc.stdout)
    assert isinstance(data, dict)
    return data


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    d = tmp_path / "secrets"
    subprocess.run(
        ["bash", str(ROOT / "deploy" / "docker" / "make-secrets.sh")],
        env={**os.environ, "EMBEDFLEET_SECRETS_DIR": str(d)},
        check=True,
        capture_output=True,
        timeout=30,
    )
    return d


@needs_compose
def test_compose_config_is_valid_with_defaults_and_with_the_example_env(secrets_dir: Path) -> None:
    env = {"EMBEDFLEET_SECRETS_DIR": str(secrets_dir)}
    plain = config_of(env)
    example = config_of(env, "--env-file", str(ENV_EXAMPLE))
    # docker-compose 1.29 lists profiled services in `config`; v2 only when
    # their profile is active.
    assert SERVICES <= set(plain["services"]) <= SERVICES | ON_DEMAND
    assert set(plain["services"]) == set(example["services"])
    assert set(plain["volumes"]) == {"data", "redis-data"}
    with_profile = config_of(env, "--profile", "cluster")
    assert set(with_profile["services"]) == SERVICES | ON_DEMAND


@needs_compose
def test_compose_config_rejects_a_broken_file(tmp_path: Path, secrets_dir: Path) -> None:
    """`compose config` is a check that can fail: a misspelt key is refused."""
    assert COMPOSE is not None
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("    stop_grace_period: 30s", "    stop_grace_perod: 30s", 1))
    proc = subprocess.run(
        [*COMPOSE, "-f", str(broken), "config", "-q"],
        env={**os.environ, "EMBEDFLEET_SECRETS_DIR": str(secrets_dir)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0 and "stop_grace_perod" in proc.stderr


@needs_compose
def test_workers_can_scale_and_share_the_data_volume(secrets_dir: Path) -> None:
    services = config_of({"EMBEDFLEET_SECRETS_DIR": str(secrets_dir)})["services"]
    for name in WORKERS:
        svc = services[name]
        # --scale needs no fixed name and no host port per replica.
        assert "container_name" not in svc and "ports" not in svc, name
        assert any(str(v).startswith("data:/data") or _target(v) == "/data" for v in svc["volumes"]), name
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
        assert svc["init"] is True
    assert any(_target(v) == "/data" for v in services["manager"]["volumes"])


def _target(volume: Any) -> str:
    if isinstance(volume, dict):
        return str(volume.get("target"))
    return str(volume).split(":")[1]


@needs_compose
def test_secrets_never_appear_in_the_configuration(secrets_dir: Path) -> None:
    rendered = yaml.safe_dump(config_of({"EMBEDFLEET_SECRETS_DIR": str(secrets_dir)}))
    for f in secrets_dir.iterdir():
        assert f.read_text().strip() not in rendered
    services = yaml.safe_load(rendered)["services"]
    for name in SERVICES & set(services):
        env = services[name].get("environment", {})
        assert "EMBEDFLEET_REDIS_PASSWORD" not in env, name
        assert env.get("EMBEDFLEET_REDIS_PASSWORD_FILE") == "/run/secrets/redis_password", name


@needs_compose
def test_stop_grace_outlasts_the_job_timeout(secrets_dir: Path) -> None:
    """Compose's SIGTERM-to-SIGKILL wait pairs with the workers' watchdog."""
    services = config_of({"EMBEDFLEET_SECRETS_DIR": str(secrets_dir)}, "--env-file", str(ENV_EXAMPLE))["services"]
    for name in WORKERS:
        svc = services[name]
        cmd = svc["command"]
        job_timeout = float(cmd[cmd.index("--job-timeout") + 1])
        grace = _duration_s(str(svc["stop_grace_period"]))
        assert svc["stop_signal"] == "SIGTERM"
        assert grace >= job_timeout + 30, name


def _duration_s(text: str) -> float:
    """Compose durations as `config` prints them: ``660s``, ``11m0s``, ``1h2m3s``."""
    total, num = 0.0, ""
    for ch in text:
        if ch.isdigit() or ch == ".":
            num += ch
        else:
            total += float(num) * {"h": 3600, "m": 60, "s": 1}[ch]
            num = ""
    return total + (float(num) if num else 0.0)


@needs_compose
def test_service_commands_are_accepted_by_the_programs(secrets_dir: Path) -> None:
    from manager.__main__ import build_parser
    from workers.mps.__main__ import parser

    services = config_of({"EMBEDFLEET_SECRETS_DIR": str(secrets_dir)})["services"]
    manager_cmd = services["manager"]["command"]
    assert manager_cmd[:3] == ["python", "-m", "manager"]
    args = build_parser().parse_args(manager_cmd[3:])
    assert args.command == "serve" and args.host == "0.0.0.0" and args.keep_serving
    assert services["manager"]["stop_signal"] == "SIGINT"
    worker_cmd = services["worker-python"]["command"]
    assert worker_cmd[:3] == ["python", "-m", "workers.mps"]
    assert parser().parse_args(worker_cmd[3:]).device == "cpu"
    helptext = subprocess.run(
        [str(rust_worker_binary()), "--help"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    rust_cmd = services["worker-rust"]["command"]
    assert rust_cmd[0] == "embedfleet-worker"
    for flag in (a for a in rust_cmd[1:] if a.startswith("--")):
        assert flag in helptext, f"embedfleet-worker has no {flag}"


@needs_compose
def test_cluster_service_runs_the_clusterer_on_the_data_volume(secrets_dir: Path) -> None:
    """`run --rm cluster [flags]` is `python -m clusterer --data-root /data
    [flags]` in the manager image, which carries the clusterer's dependencies."""
    from clusterer.cli import build_parser

    env = {"EMBEDFLEET_SECRETS_DIR": str(secrets_dir)}
    svc = config_of(env, "--profile", "cluster")["services"]["cluster"]
    assert svc["profiles"] == ["cluster"]
    assert svc["image"].startswith("embedfleet/manager:")
    assert any(_target(v) == "/data" for v in svc["volumes"])
    assert svc["environment"]["EMBEDFLEET_REDIS_PASSWORD_FILE"] == "/run/secrets/redis_password"
    entry = svc["entrypoint"]
    assert entry[0] == "/usr/local/bin/embedfleet-entrypoint" and entry[1:4] == ["python", "-m", "clusterer"]
    args = build_parser().parse_args([*entry[4:], *(svc.get("command") or []), "--min-cluster-size", "20"])
    assert str(args.data_root) == "/data"
    # The clusterer's dependencies are pinned into the manager image.
    script = (ROOT / "deploy" / "docker" / "build-images.sh").read_text()
    array = re.search(r"^MANAGER_PKGS=\(([^)]*)\)", script, re.MULTILINE)
    assert array, "build-images.sh has no MANAGER_PKGS"
    manager_pins = set(array.group(1).split())
    assert {"hdbscan", "umap-learn", "scikit-learn", "faiss-cpu", "matplotlib", "regex"} <= manager_pins


@needs_compose
def test_manager_is_told_the_dashboard_address_the_host_publishes(secrets_dir: Path) -> None:
    from manager.published import ENV_PUBLISHED, published_url

    env = {"EMBEDFLEET_SECRETS_DIR": str(secrets_dir), "EMBEDFLEET_DASHBOARD_PUBLISH": "127.0.0.1:18377"}
    manager = config_of(env)["services"]["manager"]
    assert manager["environment"][ENV_PUBLISHED] == "127.0.0.1:18377"
    assert published_url(manager["environment"][ENV_PUBLISHED]) == "http://127.0.0.1:18377/"
    ports = manager["ports"]
    published = ports[0] if isinstance(ports[0], str) else f"{ports[0]['host_ip']}:{ports[0]['published']}"
    assert published.startswith("127.0.0.1:18377")


# -- the cluster ---------------------------------------------------------------


class Cluster:
    """One Compose project of deploy/docker-compose.yml, private to a test."""

    def __init__(self, tmp: Path, secrets_dir: Path) -> None:
        assert COMPOSE is not None
        self.project = f"efdeploy{uuid.uuid4().hex[:8]}"
        self.redis_port = free_port()
        self.api_port = free_port()
        self.token = (secrets_dir / "dashboard_token").read_text().strip()
        self.password = (secrets_dir / "redis_password").read_text().strip()
        self.env = {
            **os.environ,
            "EMBEDFLEET_SECRETS_DIR": str(secrets_dir),
            "EMBEDFLEET_REDIS_PUBLISH": f"127.0.0.1:{self.redis_port}",
            "EMBEDFLEET_DASHBOARD_PUBLISH": f"127.0.0.1:{self.api_port}",
            # A killed worker's job is taken over after 5 s, not a minute.
            "EMBEDFLEET_LEASE_MS": "5000",
            "EMBEDFLEET_JOB_TIMEOUT": "300",
            "EMBEDFLEET_STOP_GRACE": "330s",
        }
        self.tmp = tmp

    def compose(self, *args: str, timeout: float = 300, stdin: bytes | None = None) -> str:
        assert COMPOSE is not None
        proc = subprocess.run(
            [*COMPOSE, "-p", self.project, "-f", str(COMPOSE_FILE), *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        out = proc.stdout.decode(errors="replace")
        assert proc.returncode == 0, f"compose {' '.join(args)}: {proc.stderr.decode(errors='replace')[-3000:]}"
        return out

    def container_ids(self, service: str) -> list[str]:
        return self.compose("ps", "-q", service, timeout=60).split()

    def api(self, path: str) -> Any:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}{path}", headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def status(self) -> dict[str, Any] | None:
        try:
            data = self.api("/api/v1/status")
        except (OSError, ValueError):
            return None
        run = data.get("run", data) if isinstance(data, dict) else None
        return run if isinstance(run, dict) else None

    def volume(self, name: str) -> str:
        return f"{self.project}_{name}"


@pytest.fixture(scope="module")
def images() -> None:
    if not engine_answers():
        pytest.skip("no Docker Engine answers here (docker info failed): the compose cluster test needs one")
    if COMPOSE is None:
        pytest.skip("no Docker Compose tool here (docker compose / docker-compose)")
    proc = subprocess.run(
        ["bash", str(ROOT / "deploy" / "docker" / "build-images.sh")],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]


@pytest.fixture
def cluster(images: None, tmp_path: Path, secrets_dir: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, secrets_dir)
    try:
        yield c
    finally:
        logs = subprocess.run(
            [*(COMPOSE or []), "-p", c.project, "-f", str(COMPOSE_FILE), "logs", "--no-color"],
            env=c.env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        (tmp_path / "compose.log").write_bytes(logs.stdout)
        subprocess.run(
            [*(COMPOSE or []), "-p", c.project, "-f", str(COMPOSE_FILE), "down", "-v", "-t", "10"],
            env=c.env,
            capture_output=True,
            timeout=300,
            check=False,
        )


def corpus_tar(root: Path) -> tuple[bytes, list[str]]:
    """A generated corpus as a tar of ``chains/`` and its relative paths."""
    from corpus.generate import generate_corpus

    paths = generate_corpus(root, suffixes=1, subreddits=2, files_per_subreddit=3, rows_per_file=300, seed=5)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(root / "chains", arcname="chains")
    return buf.getvalue(), sorted(str(p.relative_to(root)) for p in paths)


def wait_for(what: str, check: Any, timeout_s: float, every_s: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def busy_worker_container(c: Cluster) -> str | None:
    """The id of a worker container holding a job now (worker ids carry the
    container's hostname, which is its short id)."""
    try:
        workers = c.api("/api/v1/workers")
    except (OSError, ValueError):
        return None
    records = workers.get("workers", workers) if isinstance(workers, dict) else workers
    ids = [cid for s in WORKERS for cid in c.container_ids(s)]
    for rec in records or []:
        if not (isinstance(rec, dict) and rec.get("current_job")):
            continue
        for cid in ids:
            if cid.startswith(str(rec.get("host", ""))) or str(rec.get("host", "")) in cid:
                return cid
    return None


def copy_volume(c: Cluster, dest: Path) -> None:
    """The data volume's contents, read with the stack stopped."""
    proc = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "-v",
            f"{c.volume('data')}:/data:ro",
            "embedfleet/base:bookworm",
            "tar",
            "-C",
            "/data",
            "-c",
            ".",
        ],
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        tar.extractall(dest, filter="data")


def check_outputs(data: Path, corpus_root: Path, inputs: list[str]) -> None:
    """Every input has exactly one complete output, and nothing else is there."""
    expected = {output_path(p, None) for p in inputs}
    found = {str(p.relative_to(data)) for p in (data / "embeddings").rglob("*.parquet") if not p.name.startswith(".")}
    assert found == expected
    for rel in inputs:
        src = pq.read_table(corpus_root / rel)
        out = pq.read_table(data / output_path(rel, None))
        meta = {
            k.decode(): v.decode() for k, v in (pq.read_metadata(data / output_path(rel, None)).metadata or {}).items()
        }
        assert meta["embedfleet.input_path"] == rel
        non_null = src.num_rows - src.column("text").null_count
        rows = out.column("row").to_pylist()
        assert len(rows) == len(set(rows)) == non_null, rel
        assert int(meta["embedfleet.rows_total"]) == src.num_rows


@pytest.mark.docker
@pytest.mark.slow
def test_cluster_survives_a_killed_worker_and_a_redis_restart(cluster: Cluster, tmp_path: Path) -> None:
    c = cluster
    tar, inputs = corpus_tar(tmp_path / "corpus")
    # Load the corpus into the data volume as the images' unprivileged user.
    c.compose("run", "--rm", "--no-deps", "-T", "--entrypoint", "tar", "manager", "-x", "-C", "/data", stdin=tar)
    # Two replicas of the Rust worker: the workers scale with --scale.
    c.compose("up", "-d", "--scale", "worker-python=1", "--scale", "worker-rust=2", timeout=600)
    assert len(c.container_ids("worker-rust")) == 2

    # A worker container killed while it holds a job ...
    victim = wait_for("a worker to hold a job", lambda: busy_worker_container(c), 300, 0.5)
    subprocess.run(["docker", "kill", "-s", "KILL", victim], check=True, capture_output=True, timeout=60)
    # ... and the Redis container restarted while the run goes on.
    c.compose("restart", "redis", timeout=120)
    status = wait_for("the run to end", lambda: (s := c.status()) and s.get("final") and s, RUN_TIMEOUT_S, 2)
    assert status["stage"] == "done", status
    jobs = status["jobs"]
    assert jobs["failed"] == 0 and jobs["pending"] == 0 and jobs["lost"] == 0, jobs
    assert jobs["planned"] == len(inputs) == jobs["done"], jobs
    logs = c.compose("logs", "--no-color", timeout=120)
    assert c.password not in logs and c.token not in logs
    # The dashboard is announced where the host publishes it.
    assert f"status API and dashboard on http://127.0.0.1:{c.api_port}/ (published on the host" in logs

    # The clusterer runs on demand over the volume (profile `cluster`).
    c.compose("run", "--rm", "-T", "cluster", "--min-cluster-size", "20", timeout=RUN_TIMEOUT_S)

    c.compose("down", timeout=300)
    volumes = subprocess.run(["docker", "volume", "ls", "-q"], capture_output=True, text=True, check=True).stdout
    assert c.volume("data") in volumes.split(), "docker compose down removed the data volume"
    data = tmp_path / "volume"
    copy_volume(c, data)
    check_outputs(data, tmp_path / "corpus", inputs)
    assert sorted(str(p.relative_to(data)) for p in (data / "chains").rglob("*.parquet")) == inputs
    summaries = list((data / "runs").glob("*/summary.json"))
    assert len(summaries) == 1, summaries
    assert list((data / "clusters").rglob("*.parquet")), "the cluster service wrote no result"
