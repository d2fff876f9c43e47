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
    "rows_truncated", "rows_deduplicated",
)  # fmt: skip


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


def list_tree(root: Path) -> tuple[set[str], set[str]]:
    """(visible, hidden) files under ``root``, relative POSIX paths."""
    visible: set[str] = set()
    hidden: set[str] = set()
    if not root.exists():
        return visible, hidden
    for p in root.rglob("*"):
        if p.is_file() or p.is_symlink():
            rel = p.relative_to(root).as_posix()
            (hidden if p.name.startswith(".") else visible).add(rel)
    return visible, hidden


def metadata(table: pa.Table) -> dict[str, str]:
    raw = table.schema.metadata or {}
    out = {}
    for k, v in raw.items():
        key = k.decode("utf-8", "replace")
        if key.startswith(META_PREFIX):
            out[key[len(META_PREFIX) :]] = v.decode("utf-8", "replace")
    return out


def compare_tables(got: pa.Table, ref: pa.Table, tol: float) -> str | None:
    """``None`` when equal; otherwise what differs."""
    if got.column_names != ref.column_names:
        return f"columns {got.column_names} != {ref.column_names}"
    if got.num_rows != ref.num_rows:
        return f"{got.num_rows} rows != {ref.num_rows}"
    for name in got.column_names:
        if name == "embedding":
            a = np.asarray(got.column(name).combine_chunks().flatten(), dtype=np.float32)
            b = np.asarray(ref.column(name).combine_chunks().flatten(), dtype=np.float32)
            diff = float(np.max(np.abs(a - b))) if a.size else 0.0
            if a.shape != b.shape or diff > tol:
                return f"embeddings differ by {diff:.2e} (tolerance {tol:.0e})"
        elif not got.column(name).equals(ref.column(name)):
            return f"column {name!r} differs"
    gm, rm = metadata(got), metadata(ref)
    for key in STABLE_META:
        if gm.get(key) != rm.get(key):
            return f"metadata {key}: {gm.get(key)!r} != {rm.get(key)!r}"
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
            got = pq.read_table(out_root / rel)
        except (OSError, pa.ArrowException) as e:
            report.unreadable.append(f"{rel}: {e}")
            continue
        problem = compare_tables(got, pq.read_table(reference_root / rel), tol)
        if problem is not None:
            report.mismatched.append(f"{rel}: {problem}")
    return report
