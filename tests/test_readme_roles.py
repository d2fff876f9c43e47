"""README.md's "Running each role on its own machine", run as written.

The commands' text is read from the README itself (its code spans and its
``sh`` block), so an edit there changes what runs here. Only host names,
ports and paths are put in: ``redis-host:6379`` becomes a private
redis-server on a free port that wants a password, ``/data`` and
``/mnt/data`` a temporary root holding a small generated corpus, ``…`` in
``--requirepass …`` the password (Redis's own directory and address are
added to its command); the manager's dashboard gets a free port
and ``make`` skips its ``setup`` prerequisite (``make -o setup``: the tests
run after ``make setup``). Every role runs with the password only in
``EMBEDFLEET_REDIS_PASSWORD``, from an environment like ``source
<venv>/bin/activate`` makes, and the Rust worker from a directory outside
the checkout with no ``ORT_DYLIB_PATH`` or ``EMBEDFLEET_MODEL_DIR``: it
finds ONNX Runtime and its model by itself. The password must then appear
in no ``ps`` line, no process output, no journal event, report or worker
log, and no dashboard page or API answer.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import redis

from tests.support import ROOT
from tests.support.procs import Managed, ProcessGroup, free_port, wait_until
from tests.support.rust_worker import BINARY, ONNX_DIR

SECTION = "## Running each role on its own machine"
SECRET = "pw-roles-8d41c07e5b"
VENV = Path(sys.executable).parent.parent
"""The venv the tests run in: the one the README tells users to activate."""
NAMESPACE = "embedfleet"
PAGES = ("/", "/api/v1/status", "/api/v1/workers", "/api/v1/failed", "/api/v1/throughput", "/metrics")
RUN_TIMEOUT_S = 900

ROLES = {
    "redis": "redis-server ",
    "export": "export EMBEDFLEET_REDIS_PASSWORD=",
    "manager": "make manager ",
    "python-worker": "python -m workers.mps ",
    "rust-worker": "embedfleet-worker --",
    "cluster": "make cluster ARGS=",
    "cluster-remote": "make cluster REMOTE=1 ",
    "rq-worker": "rq worker ",
}
"""Each role's command, by how it starts in the README."""


def section_text() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start : end if end >= 0 else None]


def readme_commands() -> dict[str, str]:
    """Role -> its command as the README writes it (whitespace collapsed:
    a code span may wrap across lines)."""
    text = section_text()
    fences = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
    snippets = [line.strip() for block in fences for line in block.splitlines()]
    snippets = [re.sub(r"\s+#.*$", "", s) for s in snippets]  # a trailing shell comment
    snippets += [" ".join(s.split()) for s in re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S))]
    found: dict[str, str] = {}
    for role, prefix in ROLES.items():
        matches = sorted({s for s in snippets if s.startswith(prefix)})
        assert len(matches) == 1, f"README {SECTION!r}: expected one command for {role} ({prefix!r}...), got {matches}"
        found[role] = matches[0]
    return found


def localise(command: str, port: int, data: Path) -> list[str]:
    """The README's command for this machine: hosts, ports, paths and the password put in."""
    command = command.replace("redis-host:6379", f"127.0.0.1:{port}")
    command = re.sub(r"(?<![\w/.-])/(?:mnt/)?data\b", str(data), command)
    command = command.replace("--requirepass …", f"--requirepass {SECRET}")
    argv = shlex.split(command)
    if argv[0] == "make":
        argv[1:1] = ["-o", "setup"]
    if argv[0] == "redis-server":
        argv += ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(data.parent / "redis")]
    return argv


def with_arg(argv: list[str], extra: str) -> list[str]:
    """``make ... ARGS="..."`` with ``extra`` added to ARGS."""
    return [f"{a} {extra}" if a.startswith("ARGS=") else a for a in argv]


@dataclass
class PsWatch:
    """Samples every process's command line until stopped."""

    lines: set[str] = field(default_factory=set)
    done: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.done.is_set():
            out = subprocess.run(["ps", "-eww", "-o", "args="], capture_output=True, text=True, check=False).stdout
            self.lines.update(out.splitlines())
            self.done.wait(0.2)

    def seen(self, fragment: str) -> bool:
        return any(fragment in line for line in self.lines)


@pytest.fixture
def ps_watch() -> Iterator[PsWatch]:
    watch = PsWatch()
    thread = threading.Thread(target=watch.run, daemon=True)
    thread.start()
    yield watch
    watch.done.set()
    thread.join(10)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[ProcessGroup]:
    group = ProcessGroup(tmp_path / "logs")
    yield group
    group.close()


def role_env(shim: Path, **extra: str) -> dict[str, str]:
    """What ``source <venv>/bin/activate`` and ``export EMBEDFLEET_REDIS_PASSWORD=…``
    leave: the venv's bin/ first on PATH, VIRTUAL_ENV, the password; nothing
    that would point a worker at ONNX Runtime or a model."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMBEDFLEET_", "RQ_", "ORT_DYLIB_PATH"))}
    env.update(
        PATH=os.pathsep.join([str(shim), str(VENV / "bin"), env.get("PATH", "")]),
        VIRTUAL_ENV=str(VENV),
        VENV=str(VENV),
        EMBEDFLEET_REDIS_PASSWORD=SECRET,
        HF_HUB_OFFLINE="1",
    )
    env.update(extra)
    return env


def fetch(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return str(r.read().decode(errors="replace"))
    except (urllib.error.URLError, OSError):
        return None


def finished(m: Managed, timeout_s: float, what: str, procs: ProcessGroup) -> None:
    rc = m.wait(timeout_s)
    assert rc == 0, f"{what} exited {rc}:\n{procs.logs(4000)}"


def test_the_readme_gives_one_command_per_role_and_each_starts_as_the_role_it_names() -> None:
    commands = readme_commands()
    assert "--redis-url redis://redis-host:6379/0" in commands["manager"]
    assert commands["rq-worker"].endswith("embedfleet-cluster")
    assert "--url" not in commands["rq-worker"], "a password in rq's --url shows in ps"


def test_every_console_script_names_a_callable_main() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"embedfleet-manager", "embedfleet-python-worker", "embedfleet-cluster"} <= set(scripts)
    for name, target in scripts.items():
        module, func = target.split(":")
        assert callable(getattr(import_module(module), func)), name


def test_python_role_modules_answer_help_with_the_venvs_python() -> None:
    for module in ("workers.mps", "manager", "clusterer"):
        proc = subprocess.run(
            [sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
        )
        assert proc.returncode == 0, f"{module}: {proc.stderr[-2000:]}"
        assert "usage:" in proc.stdout


def make_corpus(data: Path) -> list[Path]:
    """Eight small files (800 rows): enough jobs for both workers to take some."""
    subprocess.run(
        [sys.executable, "-m", "corpus", "--output", str(data), "--suffixes", "1", "--subreddits", "2",
         "--files-per-subreddit", "4", "--rows-per-file", "100"],
        cwd=ROOT, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    inputs = sorted((data / "chains").rglob("*.parquet"))
    assert len(inputs) == 8
    return inputs


def worker_kinds(data: Path) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for path in (data / "embeddings").rglob("*.parquet"):
        kinds[(pq.read_metadata(path).metadata or {})[b"embedfleet.worker_kind"].decode()] += 1
    return kinds


def texts_under(*roots: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for r in roots if r.exists() for p in r.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_every_role_runs_as_the_readme_writes_it_and_the_password_shows_nowhere(
    tmp_path: Path, procs: ProcessGroup, ps_watch: PsWatch
) -> None:
    if not BINARY.is_file():
        pytest.fail(f"{BINARY} is not built: run `make worker-rust`")
    if not (ONNX_DIR / "embedfleet_model.json").is_file():
        pytest.fail(f"{ONNX_DIR} is missing: run `make export-onnx`")
    commands = readme_commands()
    data = tmp_path / "data"
    inputs = make_corpus(data)
    port, api_port = free_port(), free_port()
    # `embedfleet-worker` on PATH as deploy/setup.sh puts it in the venv's
    # bin/: a symlink to the binary the tests use.
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "embedfleet-worker").symlink_to(BINARY)
    env = role_env(shim)
    run = {role: localise(cmd, port, data) for role, cmd in commands.items() if role != "export"}
    assert commands["export"].startswith("export EMBEDFLEET_REDIS_PASSWORD=")

    # 1. Redis, by hand as the README writes it: Redis 7, outside the venv.
    (tmp_path / "redis").mkdir()
    outside = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != VENV / "bin")
    server = procs.start("redis", run["redis"], env={**env, "PATH": outside})
    client = redis.Redis(port=port, password=SECRET, socket_timeout=2, socket_connect_timeout=2)

    def redis_up() -> bool:
        try:
            return bool(client.ping())
        except redis.exceptions.ConnectionError:
            return False

    assert wait_until(redis_up, 20), procs.logs()
    assert server.alive()

    # 3. Both workers first, from a directory that is no checkout for the Rust one.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    python_worker = procs.start("python-worker", run["python-worker"], env=env)
    rust_worker = procs.start("rust-worker", run["rust-worker"], env=env, cwd=elsewhere)
    registered = wait_until(
        lambda: client.hlen(f"{NAMESPACE}:workers") >= 2 or not (python_worker.alive() and rust_worker.alive()),
        RUN_TIMEOUT_S / 3,
        every_s=0.5,
    )
    assert registered and python_worker.alive() and rust_worker.alive(), procs.logs(4000)

    # 2. The manager, until the run is done; the dashboard read while it runs.
    manager = procs.start("manager", with_arg(run["manager"], f"--port {api_port}"), env=env)
    pages: dict[str, str] = {}
    base = f"http://127.0.0.1:{api_port}"
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while manager.alive() and time.monotonic() < deadline:
        for page in PAGES:
            body = fetch(base + page)
            if body is not None:
                pages[page] = pages.get(page, "") + body
        time.sleep(0.5)
    finished(manager, 30, "make manager", procs)
    assert set(pages) == set(PAGES), f"pages never answered: {set(PAGES) - set(pages)}"
    outputs = [data / "embeddings" / p.relative_to(data / "chains") for p in inputs]
    assert all(o.is_file() for o in outputs), [str(o) for o in outputs if not o.is_file()]
    assert set(worker_kinds(data)) == {"python", "rust"}, f"both workers embedded: {worker_kinds(data)}"
    for worker in (python_worker, rust_worker):
        worker.signal(15)
        finished(worker, 120, f"{worker.name} after SIGTERM", procs)

    # 4. Clustering on this box, then remote through an RQ worker.
    local = procs.start("cluster", run["cluster"], env=env)
    finished(local, RUN_TIMEOUT_S, "make cluster", procs)
    summary = json.loads((data / "clusters" / "clusters_summary.json").read_text())
    assert summary["clusters"] >= 1 and summary["complete"] is True
    (data / "clusters" / "clusters_summary.json").unlink()
    rq_env = role_env(shim, EMBEDFLEET_REDIS_URL=f"redis://127.0.0.1:{port}/0")
    rq_worker = procs.start("rq-worker", run["rq-worker"], env=rq_env)
    remote = procs.start("cluster-remote", run["cluster-remote"], env=env)
    finished(remote, RUN_TIMEOUT_S, "make cluster REMOTE=1", procs)
    summary = json.loads((data / "clusters" / "clusters_summary.json").read_text())
    assert summary["clusters"] >= 1, "the RQ worker wrote the clusters again"
    rq_worker.signal(15)
    rq_worker.wait(60)
    ps_watch.done.set()

    # Every role was seen running; the password was seen nowhere.
    for fragment in ("manager serve", "workers.mps", "embedfleet-worker", "clusterer", "deploy.rq_settings"):
        assert ps_watch.seen(fragment), f"{fragment!r} never showed in ps"
    assert not [line for line in ps_watch.lines if SECRET in line]
    logs = {m.log: m.log.read_bytes() for m in procs.started}
    files = texts_under(data / "runs", data / "clusters")
    assert list((data / "runs").glob("*/events.jsonl")), "the manager journalled events"
    leaks = [str(p) for p, body in {**logs, **files}.items() if SECRET.encode() in body]
    leaks += [page for page, body in pages.items() if SECRET in body]
    assert not leaks, f"the password shows in {leaks}"
