"""``manager/_core.pyi`` against the built extension: ``mypy.stubtest``
imports ``manager._core`` and compares every name, class, property and
signature (parameter names, kinds and defaults, from the PyO3
``__text_signature__``) with the stub, so the stub cannot drift from the
Rust (``rust/py``). A stub with a wrong signature is caught."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT

STUB = ROOT / "manager" / "_core.pyi"


def stubtest(mypypath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MYPYPATH": str(mypypath)} if mypypath else dict(os.environ)
    return subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "manager._core", "--mypy-config-file", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_stub_matches_the_extension() -> None:
    res = stubtest()
    assert res.returncode == 0, res.stdout + res.stderr


def test_a_drifted_stub_is_caught(tmp_path: Path) -> None:
    shadow = tmp_path / "manager"
    shadow.mkdir()
    shutil.copy(ROOT / "manager" / "__init__.py", shadow / "__init__.pyi")
    drifted = STUB.read_text().replace("batch: int = 2000,", "batch_size: int = 2000,")
    assert drifted != STUB.read_text()
    (shadow / "_core.pyi").write_text(drifted)
    res = stubtest(tmp_path)
    assert res.returncode != 0
    assert 'manager._core.enqueue is inconsistent, runtime does not have parameter "batch_size"' in res.stdout, (
        res.stdout
    )
