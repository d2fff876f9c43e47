"""The lean Python worker install (``deploy/pyworker``): pure Python, only the
worker's runtime dependencies, no manager and no Rust extension.

Fast checks: its pins repeat the root ``requirements.txt``; the worker runs a
job with the manager, the clusterer and the corpus generator made
unimportable. The ``docker`` test builds ``embedfleet/worker-python`` (the lean
package installed with pip, binary wheels only, into an image with neither
``gcc`` nor ``cargo``) and runs one real job in it against a redis-server on
this host.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import tomllib

from bus.messages import output_path
from bus.redis_transport import RedisTransport
from corpus.generate import generate_corpus
from models.source import model_id
from tests.support import ROOT
from tests.support.procs import free_port
from tests.support.redis_server import start_redis
from tests.test_deploy_compose import engine_answers
from workers.testing import enqueue_all, jobs_for

LEAN = ROOT / "deploy" / "pyworker"
IMAGE = f"embedfleet/worker-python:{os.environ.get('EMBEDFLEET_TAG', 'latest')}"
NS = "eflean"
FORBIDDEN = ("manager", "clusterer", "corpus", "bench")
"""Top-level packages of the full install that the worker must never import."""
BUILD_TIMEOUT_S = 3600
JOB_TIMEOUT_S = 600


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            out[name.strip().lower()] = version.strip()
    return out


def declared() -> list[str]:
    project = tomllib.loads((LEAN / "pyproject.toml").read_text())["project"]
    names = []
    for dep in project["dependencies"]:
        name = dep
        for sep in "<>=!~ [;":
            name = name.split(sep, 1)[0]
        names.append(name.lower())
    return names


def test_lean_pins_are_the_root_pins_of_exactly_its_dependencies() -> None:
    lean, root = pins(LEAN / "requirements.txt"), pins(ROOT / "requirements.txt")
    assert lean, "deploy/pyworker/requirements.txt pins nothing"
    for name, version in lean.items():
        assert root.get(name) == version, f"{name}=={version} here, {root.get(name)} in requirements.txt"
    # hiredis is the optional fast reply parser: pinned, not required.
    assert set(declared()) == set(lean) - {"hiredis"}


def test_lean_package_ships_the_worker_and_not_the_manager() -> None:
    tool = tomllib.loads((LEAN / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = set(tool["packages"])
    assert {"bus", "workers", "workers.mps", "models"} <= packages
    assert not packages & set(FORBIDDEN)
    # The clone's own sources, not a copy that could drift.
    assert (LEAN / tool["package-dir"][""]).resolve() == ROOT


BLOCKER = """
import importlib.abc, runpy, sys
FORBIDDEN = {forbidden!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            raise ImportError(f"the lean worker imported {{name}}")
        return None
sys.meta_path.insert(0, Block())
sys.argv = ["python -m workers.mps", *sys.argv[1:]]
try:
    runpy.run_module("workers.mps", run_name="__main__", alter_sys=True)
finally:
    bad = sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN)
    print("FORBIDDEN-IMPORTED", bad, file=sys.stderr)
"""


def test_worker_runs_a_job_with_the_manager_unimportable(
    transport: RedisTransport, redis_url: str, tmp_path: Path
) -> None:
    """What the lean package leaves out (manager and its Rust extension,
    clusterer, corpus) is never needed: a burst run with those blocked does
    its job."""
    data = tmp_path / "data"
    files = generate_corpus(data, subreddits=1, files_per_subreddit=2, rows_per_file=20)
    transport.ensure_lanes(["default"])
    jobs = jobs_for(data, files, model_id())
    assert enqueue_all(transport, jobs) == len(files)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDFLEET_")}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            BLOCKER.format(forbidden=FORBIDDEN),
            *("--redis-url", redis_url, "--namespace", "eftest", "--data-root", str(data)),
            *("--embedder", "hash", "--burst", "--no-reuse"),
        ],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "FORBIDDEN-IMPORTED []" in proc.stderr
    for f in files:
        rel = str(f.relative_to(data))
        out = pq.read_table(data / output_path(rel, None))
        assert out.num_rows == pq.read_table(f, columns=["text"]).column("text").drop_null().__len__()


# -- the clean container ---------------------------------------------------------


@pytest.fixture(scope="module")
def lean_image() -> str:
    if not engine_answers():
        pytest.skip("no Docker Engine answers here (docker info failed): the lean worker image test needs one")
    proc = subprocess.run(
        ["nice", "-n", "19", "bash", str(ROOT / "deploy" / "docker" / "build-images.sh"), "worker-python"],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    return IMAGE


def in_image(image: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", cmd[0], image, *cmd[1:]],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def host_redis(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = start_redis(tmp_path / "redis", port)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait(10)


@pytest.mark.docker
@pytest.mark.slow
def test_lean_image_has_no_compiler_and_no_manager(lean_image: str) -> None:
    probe = in_image(
        lean_image,
        "sh",
        "-c",
        "for t in gcc cc c++ cargo rustc; do command -v $t && echo FOUND $t; done; "
        "python -c 'import manager' 2>/dev/null && echo FOUND manager; "
        "python -m pip list --format=freeze",
    )
    assert probe.returncode == 0, probe.stderr
    assert "FOUND" not in probe.stdout, probe.stdout
    installed = {line.split("==")[0].lower() for line in probe.stdout.splitlines() if "==" in line}
    assert "embedfleet-python-worker" in installed
    # None of the full install's or the development tools' packages.
    for name in ("embedfleet", "maturin", "mypy", "pytest", "hdbscan", "umap-learn", "selenium", "starlette"):
        assert name not in installed, name


def enqueue_one_file(url: str, data: Path) -> Path:
    """A one-file corpus under ``data`` and its job on the bus at ``url``."""
    import redis

    files = generate_corpus(data, subreddits=1, files_per_subreddit=1, rows_per_file=40, seed=3)
    client = redis.Redis.from_url(url)
    try:
        transport = RedisTransport(client, namespace=NS)
        transport.ensure_lanes(["default"])
        assert enqueue_all(transport, jobs_for(data, files, model_id())) == 1
    finally:
        client.close()
    return files[0]


def check_output(data: Path, source: Path) -> None:
    """The job's output holds one unit vector per non-null input row."""
    rel = str(source.relative_to(data))
    out_file = data / output_path(rel, None)
    assert out_file.exists(), f"no output {out_file}"
    texts = pq.read_table(source).column("text").to_pylist()
    out = pq.read_table(out_file)
    rows = out.column("row").to_pylist()
    assert sorted(rows) == [i for i, t in enumerate(texts) if t is not None]
    vectors = np.stack(out.column("embedding").to_numpy(zero_copy_only=False))
    assert vectors.shape == (len(rows), 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    meta = {k.decode(): v.decode() for k, v in (pq.read_metadata(out_file).metadata or {}).items()}
    assert meta["embedfleet.input_path"] == rel
    assert meta["embedfleet.worker_kind"] == "python"
    # The installed package's version, not a checkout's fallback.
    assert not meta["embedfleet.software_version"].endswith("+checkout"), meta


def worker_args(url: str) -> list[str]:
    return ["--redis-url", url, "--namespace", NS, "--data-root", "/data", "--device", "cpu", "--burst"]


@pytest.mark.docker
@pytest.mark.slow
def test_lean_image_runs_a_job_with_the_real_model(lean_image: str, host_redis: str, tmp_path: Path) -> None:
    """The Compose file's Python worker image, on a job from a host redis-server."""
    data = tmp_path / "data"
    source = enqueue_one_file(host_redis, data)
    # The container's user writes the output where the test reads it.
    uid = f"{os.getuid()}:{os.getgid()}"
    proc = subprocess.run(
        [
            *("docker", "run", "--rm", "--network", "host", "--user", uid, "-e", "HOME=/tmp"),
            *("-v", f"{data}:/data", lean_image, "python", "-m", "workers.mps", *worker_args(host_redis)),
        ],
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    check_output(data, source)


# -- docs/deploy.md's install commands, as written, in a clean container ----------


def documented_install() -> list[str]:
    """The clone install commands of docs/deploy.md's worker-only section."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    section = text[text.index("## The Python worker alone") :]
    section = section[section.index("From a clone") :]
    block = section[section.index("\n    ") : section.index("\n\n", section.index("\n    "))]
    lines = [line.strip() for line in block.splitlines() if line.strip()]
    commands = [line for line in lines if not line.startswith("cd ")]
    assert any("pip install" in c and "./deploy/pyworker" in c for c in commands), commands
    return commands


def test_documented_install_uses_only_the_lean_package() -> None:
    commands = documented_install()
    joined = "\n".join(commands)
    assert "deploy/pyworker/requirements.txt" in joined
    for heavy in ("-r requirements.txt", "maturin", "cargo", "rustup", "make setup", "pip install ."):
        assert heavy not in joined, heavy


def clone_copy(dest: Path) -> Path:
    """The working tree's files as a fresh clone has them (tracked and new, not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


@pytest.fixture
def wheelhouse(lean_image: str) -> Iterator[str]:
    """The build script's wheelhouse (filled by the image build) on loopback:
    the container's pip gets every wheel from it, as the image builds do."""
    home = Path(os.environ.get("EMBEDFLEET_HOME", Path.home() / ".cache" / "embedfleet"))
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "--directory",
            str(home / "wheelhouse"),
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.kill()
        proc.wait(10)


@pytest.mark.docker
@pytest.mark.slow
def test_documented_install_runs_a_job_in_a_container_with_no_compiler(
    wheelhouse: str, host_redis: str, tmp_path: Path
) -> None:
    """docs/deploy.md's commands, as written, in ``embedfleet/python`` (the
    local base image plus Python; no gcc, no cargo), with pip reading only the
    wheelhouse; then the installed worker does a job."""
    tag = IMAGE.rsplit(":", 1)[1]
    data = tmp_path / "data"
    source = enqueue_one_file(host_redis, data)
    src = clone_copy(tmp_path / "embedfleet")
    script = "\n".join(
        [
            "set -e",
            "for t in gcc cc c++ cargo rustc; do if command -v $t; then echo FOUND $t; exit 99; fi; done",
            "cd /src",
            *documented_install(),
            "! /opt/embedfleet/venv/bin/python -c 'import manager' 2>/dev/null",
            "/opt/embedfleet/venv/bin/embedfleet-python-worker " + " ".join(worker_args(host_redis)),
        ]
    )
    proc = subprocess.run(
        [
            *("docker", "run", "--rm", "--network", "host", "--user", "0:0", "-e", "PIP_NO_INDEX=1"),
            *("-e", f"PIP_FIND_LINKS={wheelhouse}", "-e", "HOME=/tmp"),
            *("-v", f"{src}:/src", "-v", f"{data}:/data", "--entrypoint", "sh", f"embedfleet/python:{tag}"),
            *("-c", script),
        ],
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT_S + 900,
        check=False,
    )
    assert "FOUND" not in proc.stdout, proc.stdout
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-4000:])
    check_output(data, source)
