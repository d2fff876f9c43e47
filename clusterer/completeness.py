"""Is the embedding run complete? Which outputs may be clustered?

An input file is done when outputs made from its current fingerprint with the
chosen model cover all its rows (one whole-file output, or row-range parts
with no gap). This is a plain Python walk on purpose: the clusterer often runs
on a box without the manager's compiled core. With a Redis URL, jobs still
queued on the bus also make the run incomplete.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bus.constants import INPUT_DIR
from bus.messages import output_path
from clusterer.catalog import Catalog, EmbeddingPart, walk_parquet

CHECKPOINT_NAME = "subreddits_list.json"


class IncompleteRun(Exception):
    """The run still has work to do; the message lists what is missing."""


class NothingToCluster(Exception):
    """No embeddings at all: nothing was embedded yet, or the roots are wrong."""


class AmbiguousRun(Exception):
    """The run cannot be read as given (several models, a bad checkpoint file)."""


@dataclass(frozen=True)
class Problem:
    """An input (or output) that is not clustered, and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass
class Completeness:
    """What can be clustered, and what stands in the way of a complete run."""

    model: str
    usable: list[EmbeddingPart]
    inputs: int
    failed: list[Problem] = field(default_factory=list)
    """Inputs not (fully) embedded and outputs that cannot be read, each with its reason."""
    ignored: list[str] = field(default_factory=list)
    queued_jobs: int = 0
    dead_jobs: int = 0

    @property
    def missing(self) -> list[str]:
        return [str(p) for p in self.failed]

    @property
    def complete(self) -> bool:
        return not self.failed and self.queued_jobs == 0

    def explain(self, dead_letters: dict[str, str]) -> None:
        """Replace "no output" by the reason its job was dead-lettered, where the bus knows it."""
        for i, p in enumerate(self.failed):
            why = dead_letters.get(p.path)
            if why is not None:
                prefix = f"{p.path}: "
                why = why[len(prefix) :] if why.startswith(prefix) else why
                self.failed[i] = Problem(p.path, f"dead-lettered: {why}")

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.usable)

    def problems(self, limit: int = 20) -> str:
        """Human-readable list of what is missing (at most ``limit`` lines)."""
        lines = [f"  - {m}" for m in self.missing[:limit]]
        if len(self.missing) > limit:
            lines.append(f"  - ... and {len(self.missing) - limit} more")
        if self.queued_jobs:
            lines.append(f"  - {self.queued_jobs} job(s) still queued or running on the bus")
        if self.dead_jobs:
            lines.append(f"  - {self.dead_jobs} job(s) dead-lettered (see `python -m manager status`)")
        return "\n".join(lines)


def fingerprint(path: Path) -> str:
    """The input fingerprint workers record: ``<size>-<mtime_ns>``."""
    st = os.stat(path)
    return f"{st.st_size}-{st.st_mtime_ns}"


def read_checkpoint(path: Path) -> list[str] | None:
    """Subreddit names from a checkpoint file: a JSON list, or ``{"subreddits": [...]}``."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise AmbiguousRun(f"{path}: not JSON ({e})") from None
    if isinstance(data, dict):
        data = data.get("subreddits", [])
    if not isinstance(data, list) or not all(isinstance(s, str) for s in data):
        raise AmbiguousRun(f"{path}: expected a JSON list of subreddit names")
    return data


def list_inputs(input_root: Path, subreddits: list[str] | None) -> list[str]:
    """Input files (relative POSIX paths), filtered by the checkpoint if any."""
    base = input_root / INPUT_DIR
    if not base.is_dir():
        return []
    keep = set(subreddits) if subreddits is not None else None
    out = []
    for path in walk_parquet(base):
        rel = path.relative_to(input_root).as_posix()
        parts = rel.split("/")
        if keep is not None and (len(parts) < 4 or parts[2] not in keep):
            continue
        out.append(rel)
    return out


def choose_model(catalog: Catalog, wanted: str | None, local: str | None) -> str:
    """The model whose outputs are clustered: asked for, else the only one, else the local one."""
    found = catalog.models
    if wanted:
        return wanted
    if len(found) == 1:
        return next(iter(found))
    if local and local in found:
        return local
    raise AmbiguousRun(f"outputs of several models found ({', '.join(sorted(found))}): choose one with --model")


def cover(parts: list[EmbeddingPart], rows: int) -> tuple[list[EmbeddingPart], list[str]]:
    """Non-overlapping parts covering ``[0, rows)`` and the gaps left."""
    chosen: list[EmbeddingPart] = []
    gaps: list[str] = []
    end = 0
    for p in sorted(parts, key=lambda p: (p.row_start, -p.row_end)):
        if p.row_end <= end:
            continue
        if p.row_start < end:
            gaps.append(f"{p.rel} overlaps another output (ignored)")
            continue
        if p.row_start > end:
            gaps.append(f"rows {end}-{p.row_start} not embedded")
        chosen.append(p)
        end = p.row_end
    if end < rows:
        gaps.append(f"rows {end}-{rows} not embedded")
    return chosen, gaps


def unreadable_input(path: Path) -> str | None:
    """Why an input is not a readable Parquet file (its footer), or None when it is."""
    try:
        pq.ParquetFile(path).close()
    except (OSError, pa.ArrowException) as e:
        return f"no output: the input is not a readable Parquet file ({str(e).splitlines()[0][:200]})"
    return None


def check_file(input_root: Path, rel: str, parts: list[EmbeddingPart], model: str) -> tuple[list[EmbeddingPart], str]:
    """Usable outputs of one input file, and what is missing ('' when nothing)."""
    fp = fingerprint(input_root / rel)
    current = [p for p in parts if p.model == model and p.fingerprint == fp]
    if not current:
        if not parts:
            return [], unreadable_input(input_root / rel) or "no output"
        if any(p.fingerprint == fp for p in parts):
            return [], f"output made by another model (not {model})"
        return [], "stale output (input changed since it was embedded)"
    whole = output_path(rel, None)
    for p in current:
        if p.rel == whole:
            return [p], ""
    rows = pq.ParquetFile(input_root / rel).metadata.num_rows
    chosen, gaps = cover(current, rows)
    return chosen, "; ".join(gaps)


def _split(broken: str) -> tuple[str, str]:
    """``(path, reason)`` of a catalog's "<path>: <problem>" line."""
    path, _, why = broken.partition(": ")
    return path, f"unreadable output ({why})" if why else "unreadable output"


def check(input_root: Path, catalog: Catalog, model: str, subreddits: list[str] | None) -> Completeness:
    """Compare the inputs with the outputs (file-based; the bus is asked separately)."""
    inputs = list_inputs(input_root, subreddits)
    by_input: dict[str, list[EmbeddingPart]] = defaultdict(list)
    for p in catalog.parts:
        by_input[p.input_path].append(p)
    result = Completeness(model=model, usable=[], inputs=len(inputs))
    result.failed.extend(Problem(*_split(b)) for b in catalog.broken)
    for rel in inputs:
        try:
            usable, problem = check_file(input_root, rel, by_input.pop(rel, []), model)
        except OSError as e:
            usable, problem = [], f"cannot read the input ({e.strerror or e})"
        result.usable.extend(usable)
        if problem:
            result.failed.append(Problem(rel, problem))
    for rel, parts in sorted(by_input.items()):
        result.ignored.extend(f"{p.rel}: its input {rel} is gone or not selected" for p in parts)
    return result
