"""``deploy/release/build-release.sh``: release tarballs of the Rust worker.

The host target's tarball is unpacked and its worker, using only what the
tarball holds (binary, ONNX Runtime library, ONNX model), embeds a small
corpus from a real Redis. The aarch64 tarball is cross-built and checked to
hold aarch64 code, for the worker and its ONNX Runtime library alike.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import redis

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "deploy" / "release" / "build-release.sh"
ELF_MACHINE = {"x86_64": 62, "aarch64": 183}
BUILD_TIMEOUT_S = 2400


def build_release(out: Path, *target: str) -> Path:
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--out", str(out), *target],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    tarball = Path(proc.stdout.strip().splitlines()[-1])
    assert tarball.is_file()
    return tarball


def unpack(tarball: Path, dest: Path) -> Path:
    """Unpack as an installer would (--strip-components=1) and check the digest."""
    digest = subprocess.run(
        ["sha256sum", "-c", tarball.name + ".sha256"], cwd=tarball.parent, capture_output=True, text=True, check=False
    )
    assert digest.returncode == 0, digest.stdout + digest.stderr
    dest.mkdir()
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
        top = {n.split("/", 1)[0] for n in names}
        assert top == {tarball.name.removesuffix(".tar.gz")}, top
        tar.extractall(dest, filter="data")
    root = dest / top.pop()
    for rel in (
        "bin/embedfleet-worker",
        "lib/libonnxruntime.so",
        "model/model.onnx",
        "model/tokenizer.json",
        "model/embedfleet_model.json",
        "systemd/embedfleet-worker-rust@.service",
        "systemd/embedfleet.env.example",
        "README",
    ):
        assert (root / rel).is_file(), f"the tarball lacks {rel}"
    assert os.access(root / "bin" / "embedfleet-worker", os.X_OK)
    return root


def elf_machine(path: Path) -> int:
    head = path.read_bytes()[:20]
    assert head[:4] == b"\x7fELF", f"{path.name} is not an ELF file"
    return int.from_bytes(head[18:20], "little")


@pytest.mark.slow
def test_host_release_embeds_with_only_what_the_tarball_holds(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> None:
    from corpus.generate import generate_corpus

    root = unpack(build_release(tmp_path / "dist"), tmp_path / "opt")
    assert elf_machine(root / "bin" / "embedfleet-worker") == ELF_MACHINE[os.uname().machine]
    data = tmp_path / "data"
    inputs = generate_corpus(data, suffixes=1, subreddits=1, files_per_subreddit=2, rows_per_file=40, seed=11)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for key in ("EMBEDFLEET_REDIS_URL", "EMBEDFLEET_MODEL_DIR", "ORT_DYLIB_PATH", "EMBEDFLEET_DATA_ROOT"):
        env.pop(key, None)
    scan = subprocess.run(
        [sys.executable, "-m", "manager", "scan", "--input", str(data), "--output", str(data),
         "--redis-url", redis_url],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert scan.returncode == 0, scan.stderr[-3000:]
    # Run from an empty directory with the installed layout's settings only.
    worker = subprocess.run(
        [str(root / "bin" / "embedfleet-worker"), "--redis-url", redis_url, "--data-root", str(data), "--burst",
         "--threads", "1"],
        env={**env, "ORT_DYLIB_PATH": str(root / "lib" / "libonnxruntime.so"),
             "EMBEDFLEET_MODEL_DIR": str(root / "model")},
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert worker.returncode == 0, worker.stderr[-3000:]
    for src in inputs:
        out = data / "embeddings" / src.relative_to(data / "chains")
        meta = pq.read_metadata(out).metadata or {}
        assert meta[b"embedfleet.worker_kind"] == b"rust"
        assert pq.read_metadata(out).num_rows == pq.read_table(src).column("text").drop_null().length()


@pytest.mark.slow
def test_aarch64_release_holds_aarch64_code(tmp_path: Path) -> None:
    root = unpack(build_release(tmp_path / "dist", "--target", "aarch64-unknown-linux-gnu"), tmp_path / "opt")
    assert elf_machine(root / "bin" / "embedfleet-worker") == ELF_MACHINE["aarch64"]
    assert elf_machine(root / "lib" / "libonnxruntime.so") == ELF_MACHINE["aarch64"]
    readelf = subprocess.run(
        ["readelf", "-d", str(root / "bin" / "embedfleet-worker")], capture_output=True, text=True, check=True
    )
    # Dynamically linked against glibc only: nothing the target may lack.
    needed = {line.split("[", 1)[1].rstrip("]") for line in readelf.stdout.splitlines() if "(NEEDED)" in line}
    assert needed <= {"libc.so.6", "libm.so.6", "libgcc_s.so.1", "libdl.so.2", "libpthread.so.0", "librt.so.1",
                      "ld-linux-aarch64.so.1"}, needed  # fmt: skip
