"""Output checks: every output present exactly once, equal to a fault-free run.

A *visible* file is any file under the output tree whose name does not start
with ``.``; the visible files must be exactly the expected outputs, each a
readable Parquet file equal in content to the same output of a fault-free
run (``row`` and ``id`` exactly, ``embedding`` within a tolerance, provenance
metadata that does not name the worker exactly). Hidden ``.*.tmp`` files are
the temporaries of killed workers: allowed (no reader sees them), reported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bus.constants import META_PREFIX

# Metadata that must not depend on which worker wrote the output, or when.
STABLE_META = (
    "format_version", "model_id", "normalized", "input_path", "input_fingerprint", "row_start", "row_end",
    "job_id", "worker_kind", "rows_total", "rows_embedded", "rows_null", "rows_empty", "rows_invalid_utf8",
    "rows_truncated",
)  # fmt: skip
HOW_OBTAINED = ("model_calls", "rows_reused", "rows_deduplicated")
"""How a job got its vectors: their split depends on what the reuse store
held at that moment (a store lost with Redis, a claim of a killed worker), so
only their sum, every row the job embedded, must equal the reference's."""


@dataclass
class OutputReport:
    expected: int
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    stale_temps: list[str] = field(default_factory=list)
    odd_hidden: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.unreadable or self.mismatched or self.odd_hidden)

    def summary(self) -> str:
        return (
            f"expected={self.expected} missing={len(self.missing)} unexpected={len(self.unexpected)} "
            f"unreadable={len(self.unreadable)} mismatched={len(self.mismatched)} odd_hidden={len(self.odd_hidden)} "
            f"stale_temps={len(self.stale_temps)}; missing {self.missing[:3]} unexpected {self.unexpected[:3]} "
            f"unreadable {self.unreadable[:3]} mismatched {self.mismatched[:3]} odd hidden {self.odd_hidden[:3]}"
        )


MANAGER_DIR = ".embedfleet"
"""The manager's own folder under the output root (the scan's footer cache): no outputs."""


def list_tree(root: Path) -> tuple[set[str], set[str]]:
    """(visible, hidden) files under ``root``, relative POSIX paths (the
    manager's own ``.embedfleet/`` left out)."""
    visible: set[str] = set()
    hidden: set[str] = set()
    if not root.exists():
        return visible, hidden
    for p in root.rglob("*"):
        if p.is_file() or p.is_symlink():
            rel = p.relative_to(root).as_posix()
            if rel.startswith(MANAGER_DIR + "/"):
                continue
            (hidden if p.name.startswith(".") else visible).add(rel)
    return visible, hidden


def metadata(path: Path) -> dict[str, str]:
    """The ``embedfleet.*`` key-value metadata of a Parquet file's footer
    (where the workers write it; not the Arrow schema's, which pyarrow fills
    only for files written with schema metadata)."""
    raw = pq.read_metadata(path).metadata or {}
    out = {}
    for k, v in raw.items():
        key = k.decode("utf-8", "replace")
        if key.startswith(META_PREFIX):
            out[key[len(META_PREFIX) :]] = v.decode("utf-8", "replace")
    return out


REUSED_MIN_COSINE = 0.99999
"""A vector taken from the reuse store was stored as binary16 (docs/reuse.md):
equal to the computed one within this cosine, not bit for bit."""


def compare_embeddings(got: pa.Table, ref: pa.Table, tol: float, reused: bool) -> str | None:
    a = np.asarray(got.column("embedding").combine_chunks().flatten(), dtype=np.float32)
    b = np.asarray(ref.column("embedding").combine_chunks().flatten(), dtype=np.float32)
    if a.shape != b.shape:
        return f"embeddings of shapes {a.shape} and {b.shape}"
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    if diff <= tol:
        return None
    if not reused:
        return f"embeddings differ by {diff:.2e} (tolerance {tol:.0e})"
    cos = float(np.min(np.sum(a.reshape(-1, 384) * b.reshape(-1, 384), axis=1)))
    return None if cos >= REUSED_MIN_COSINE else f"reused embeddings at cosine {cos:.6f} (< {REUSED_MIN_COSINE})"


def compare_outputs(got_path: Path, ref_path: Path, tol: float) -> str | None:
    """``None`` when the two output files are equal; otherwise what differs."""
    got, ref = pq.read_table(got_path), pq.read_table(ref_path)
    if got.column_names != ref.column_names:
        return f"columns {got.column_names} != {ref.column_names}"
    if got.num_rows != ref.num_rows:
        return f"{got.num_rows} rows != {ref.num_rows}"
    gm, rm = metadata(got_path), metadata(ref_path)
    reused = gm.get("rows_reused", "0") != "0" or rm.get("rows_reused", "0") != "0"
    for name in got.column_names:
        if name == "embedding":
            problem = compare_embeddings(got, ref, tol, reused)
            if problem:
                return problem
        elif not got.column(name).equals(ref.column(name)):
            return f"column {name!r} differs"
    for key in STABLE_META:
        if gm.get(key) != rm.get(key):
            return f"metadata {key}: {gm.get(key)!r} != {rm.get(key)!r}"
    got_sum, ref_sum = (sum(int(m.get(k, "0")) for k in HOW_OBTAINED) for m in (gm, rm))
    if got_sum != ref_sum:
        return f"metadata {' + '.join(HOW_OBTAINED)}: {got_sum} != {ref_sum}"
    return None


def check_outputs(out_root: Path, expected: Iterable[str], reference_root: Path, tol: float) -> OutputReport:
    """Check the output tree of a run against the same outputs of a fault-free run."""
    want = set(expected)
    visible, hidden = list_tree(out_root)
    report = OutputReport(expected=len(want))
    report.missing = sorted(want - visible)
    report.unexpected = sorted(visible - want)
    report.stale_temps = sorted(h for h in hidden if h.endswith(".tmp"))
    report.odd_hidden = sorted(h for h in hidden if not h.endswith(".tmp"))
    for rel in sorted(want & visible):
        try:
            problem = compare_outputs(out_root / rel, reference_root / rel, tol)
        except (OSError, pa.ArrowException) as e:
            report.unreadable.append(f"{rel}: {e}")
            continue
        if problem is not None:
            report.mismatched.append(f"{rel}: {problem}")
    return report
