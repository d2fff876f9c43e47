"""What the scenarios that involve the manager share: a corpus of their own
(a subset copied with its fingerprints), ``python -m manager serve`` as a
managed process, the journal's checks, and a private mount namespace with a
small tmpfs (the output disk that fills up).

The manager scans its input root, so these scenarios give it a copy of part
of the corpus (``shutil.copy2`` keeps size and mtime, hence the
fingerprints, so the jobs and the outputs are those of the fault-free
reference). Its run dir lies outside the output tree.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bus.messages import Job
from tests.fault.dataset import Corpus, jobs_for
from tests.fault.harness import Run
from tests.support import ROOT
from tests.support.procs import Managed, ProcessGroup, wait_until


def copy_corpus(corpus: Corpus, dest: Path, n: int) -> Corpus:
    """The first ``n`` ordinary files of ``corpus`` under ``dest``, same fingerprints."""
    files = corpus.files[:n]
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(corpus.root / rel, target)
    return Corpus(dest, tuple(files), corpus.poison)


def planned_jobs(corpus: Corpus, model: str) -> list[Job]:
    """The jobs ``serve --id-column id`` plans for a fresh copy."""
    return jobs_for(corpus, corpus.files, model)


def serve_argv(run: Run, input_root: Path, run_dir: Path, output_root: Path | None = None) -> list[str]:
    import sys

    out = output_root or run.cfg.output_root
    return [sys.executable, "-m", "manager", "serve", "--redis-url", run.cfg.redis_url, "--namespace",
            run.cfg.namespace, "--input", str(input_root), "--output", str(out), "--run-dir", str(run_dir),
            "--id-column", "id", "--model", run.kind.model_id(), "--no-api", "--no-advertise",
            "--redis-wait", "10"]  # fmt: skip


def start_manager(
    run: Run, input_root: Path, run_dir: Path, output_root: Path | None = None, prefix: Sequence[str] = ()
) -> Managed:
    argv = serve_argv(run, input_root, run_dir, output_root)
    return run.procs.start("manager", argv, env={"PYTHONUNBUFFERED": "1"}, prefix=prefix)


def known_count(run: Run, jobs: list[Job]) -> int:
    """How many of ``jobs`` the bus knows (in any state)."""
    client = run.client()
    try:
        states: list[object] = list(client.hmget(run.keys.state, [j.id for j in jobs]))  # type: ignore[arg-type]
        return sum(1 for s in states if s is not None)
    finally:
        client.close()


def wait_enqueued(run: Run, jobs: list[Job], manager: Managed, timeout_s: float = 60) -> None:
    """Until the manager put every job on the bus (then burst workers can start)."""
    ok = wait_until(lambda: known_count(run, jobs) == len(jobs) or not manager.alive(), timeout_s, every_s=0.1)
    assert ok and manager.alive(), f"the manager never enqueued the run:\n{manager.log_tail()}"


@dataclass
class MountNamespace:
    """A process holding a private mount namespace with a tmpfs at ``mountpoint``.

    Processes started with ``prefix`` run inside it; this process reaches
    its files through ``/proc/<holder>/root`` (``path``)."""

    mountpoint: Path
    size: str
    procs: ProcessGroup
    holder: Managed | None = None

    def start(self) -> MountNamespace:
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        script = (
            f"mount -t tmpfs -o size={self.size} embedfleet-fault {self.mountpoint} && echo mounted && exec sleep 3600"
        )
        self.holder = self.procs.start(
            "mountns", ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
        )
        ok = wait_until(lambda: "mounted" in self.holder.log_tail() if self.holder else False, 10)
        assert ok, f"no tmpfs in a private mount namespace: {self.holder.log_tail()}"
        return self

    @property
    def prefix(self) -> list[str]:
        assert self.holder is not None
        return ["nsenter", f"--mount=/proc/{self.holder.pid}/ns/mnt", f"--wd={ROOT}", "--"]

    def path(self, p: Path) -> Path:
        """``p`` as seen inside the namespace, from this process."""
        assert self.holder is not None
        return Path(f"/proc/{self.holder.pid}/root") / Path(p).relative_to("/")

    def fill(self, name: str = "ballast") -> int:
        """Fill the tmpfs to the last byte; the bytes written."""
        written = 0
        chunk = b"\0" * (1 << 20)
        with open(self.path(self.mountpoint / name), "wb", buffering=0) as f:
            while True:
                try:
                    n = f.write(chunk)
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
                    if len(chunk) == 1:
                        return written
                    chunk = chunk[: len(chunk) // 2]
                    continue
                written += n or 0

    def free(self, name: str = "ballast") -> None:
        os.unlink(self.path(self.mountpoint / name))


def require_mount_namespaces() -> str | None:
    """Why a private mount namespace cannot be made here (``None`` if it can)."""
    if os.geteuid() != 0:
        return "needs root (mount a tmpfs in a private mount namespace)"
    for tool in ("unshare", "nsenter"):
        if shutil.which(tool) is None:
            return f"needs {tool} (util-linux)"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True, text=True, check=False
    )
    return None if probe.returncode == 0 else f"cannot unshare the mount namespace: {probe.stderr.strip()}"


def journal_verdict(run: Run, run_dir: Path) -> tuple[bool, list[str], dict[str, object]]:
    """(chain intact, problems, completeness) of the manager's journal, checked against the bus."""
    from manager.completeness import check
    from manager.journal import verify_run

    chain = verify_run(run_dir)
    complete = check(run_dir, run.settings)
    return chain.ok and complete.ok, chain.problems + complete.problems(), complete.to_dict()


def wait_exit(m: Managed, timeout_s: float) -> int:
    rc = m.wait(timeout_s)
    assert rc is not None, f"{m.name} did not exit in {timeout_s} s:\n{m.log_tail()}"
    return rc


def sleep_until(deadline: float) -> None:
    time.sleep(max(0.0, deadline - time.monotonic()))
