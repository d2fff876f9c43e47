"""The straightforward pure-Python scanner: the same walk, diff and split as
the Rust scan (``manager._core.scan``), written the obvious way (``os.scandir``,
``os.stat``, ``pyarrow.parquet.read_metadata`` on every footer it needs, one
file after another, no cache).

It is the benchmark's baseline and the tests' oracle, kept out of the
product package: ``scan`` returns the very shape ``_core.scan`` does (its
``PlannedJob`` and ``SubredditScan`` records, compared by value), so the two
can be compared with ``==``. (The plain redis-py enqueue, which the
manager needs for ``rediss://``, is product code: ``bus.enqueue``.)
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from bus.constants import INPUT_DIR, META_PREFIX, OUTPUT_DIR
from bus.errors import UnsafePath
from bus.messages import job_id, output_path
from manager._core import PlannedJob, SubredditScan

PARQUET = ".parquet"
TEMP = ".tmp"
PART_MARK = ".rows-"

Issues = list[tuple[str, str]]


@dataclass(frozen=True)
class Stamp:
    size: int
    mtime_ns: int

    @property
    def fingerprint(self) -> str:
        return f"{self.size}-{self.mtime_ns}"


@dataclass
class Listing:
    files: dict[str, Stamp] = field(default_factory=dict)
    present: set[str] = field(default_factory=set)
    unreadable: bool = False
    temps: list[str] = field(default_factory=list)
    """Hidden ``.tmp`` files: the workers' temporaries."""


def _problem(e: OSError) -> str:
    return "permission denied" if isinstance(e, PermissionError) else (e.strerror or str(e))


def _link_problem(e: OSError) -> str:
    return "broken symlink" if isinstance(e, FileNotFoundError) else f"unreadable symlink: {_problem(e)}"


def _follow(path: str, root: str | None) -> os.stat_result:
    """``stat`` of what the symlink ``path`` leads to, refused (``ValueError``,
    the problem to report) when that is outside the canonical ``root``."""
    target = os.path.realpath(path, strict=True)
    if root is not None and not (target == root or target.startswith(root.rstrip("/") + "/")):
        raise ValueError(f"symlink leads out of the data root {root} (to {target}); skipped")
    return os.stat(target)


def _utf8(name: str, path: str, issues: Issues) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        issues.append((path, "file name is not valid UTF-8; skipped"))
        return False


def subdirs(path: str, issues: Issues, root: str | None = None) -> list[str] | None:
    """Sorted subdirectory names (symlinks followed inside ``root``); ``None``
    when ``path`` does not exist. Raises ``OSError`` when it cannot be read."""
    try:
        entries = list(os.scandir(path))
    except FileNotFoundError:
        return None
    names = []
    for e in entries:
        if not _utf8(e.name, e.path, issues) or e.name.startswith("."):
            continue
        if e.is_symlink():
            try:
                if stat.S_ISDIR(_follow(e.path, root).st_mode):
                    names.append(e.name)
            except OSError as err:
                issues.append((e.path, _link_problem(err)))
            except ValueError as err:
                issues.append((e.path, str(err)))
        elif e.is_dir(follow_symlinks=False):
            names.append(e.name)
    return sorted(names)


def parquet_files(path: str, issues: Issues, root: str | None = None) -> Listing:
    """The ``.parquet`` files of a directory with their stat (symlinks
    followed inside ``root``), and the workers' temporaries apart."""
    out = Listing()
    try:
        entries = list(os.scandir(path))
    except FileNotFoundError:
        return out
    except OSError as e:
        out.unreadable = True
        issues.append((path, f"cannot read directory: {_problem(e)}"))
        return out
    for ent in sorted(entries, key=lambda x: x.name):
        if not _utf8(ent.name, ent.path, issues):
            continue
        if ent.name.startswith("."):
            if ent.name.endswith(TEMP):
                out.temps.append(ent.name)
            continue
        if not ent.name.endswith(PARQUET):
            continue
        out.present.add(ent.name)
        try:
            st = _follow(ent.path, root) if ent.is_symlink() else ent.stat(follow_symlinks=False)
        except OSError as err:
            issues.append((ent.path, _link_problem(err) if ent.is_symlink() else f"cannot stat: {_problem(err)}"))
            continue
        except ValueError as err:
            issues.append((ent.path, str(err)))
            continue
        if stat.S_ISDIR(st.st_mode):
            issues.append((ent.path, "is a directory, not a parquet file"))
        elif not stat.S_ISREG(st.st_mode):
            issues.append((ent.path, "not a regular file"))
        else:
            out.files[ent.name] = Stamp(st.st_size, st.st_mtime_ns)
    return out


def parse_part(name: str) -> tuple[str, tuple[int, int]] | None:
    """``f.rows-<s>-<e>.parquet`` -> (``f.parquet``, (s, e))."""
    if not name.endswith(PARQUET) or PART_MARK not in name:
        return None
    stem, _, rng = name[: -len(PARQUET)].rpartition(PART_MARK)
    s, sep, e = rng.partition("-")
    if not (stem and sep and s.isdigit() and e.isdigit() and s.isascii() and e.isascii()) or int(s) > int(e):
        return None
    return stem + PARQUET, (int(s), int(e))


def plan_parts(groups: list[tuple[int, int]], rows_per_part: int) -> list[tuple[int, int, int]]:
    """Row-range parts ``(start, end, bytes)`` of a file with these
    ``(rows, bytes)`` row groups; empty when it is one job."""
    total = sum(r for r, _ in groups)
    if rows_per_part == 0 or total <= rows_per_part:
        return []
    parts: list[tuple[int, int, int]] = []
    start = end = nbytes = 0
    for rows, size in groups:
        if rows == 0:
            continue
        if end > start and end - start + rows > rows_per_part:
            parts.append((start, end, nbytes))
            start, nbytes = end, 0
        end += rows
        nbytes += size
    if end > start:
        parts.append((start, end, nbytes))
    return parts


def tiles(ranges: list[tuple[int, int]], total: int) -> bool:
    """Whether ranges cover ``[0, total)`` exactly."""
    nxt = 0
    for s, e in sorted(ranges):
        if s != nxt or e < s:
            return False
        nxt = e
    return bool(ranges) and nxt == total


def _metadata(path: str, size: int) -> Any:
    if size < 12:
        raise ValueError(f"not a parquet file ({size} bytes, too small)")
    return pq.read_metadata(path)


def provenance(path: str, size: int) -> tuple[str, str]:
    """(fingerprint, model) an output was made from."""
    kv = _metadata(path, size).metadata or {}
    fp, model = kv.get(f"{META_PREFIX}input_fingerprint".encode()), kv.get(f"{META_PREFIX}model_id".encode())
    if fp is None or model is None:
        raise ValueError("output carries no embedfleet provenance metadata")
    return fp.decode(), model.decode()


def row_groups(path: str, size: int) -> list[tuple[int, int]]:
    md = _metadata(path, size)
    groups = []
    for i in range(md.num_row_groups):
        rg = md.row_group(i)
        groups.append((rg.num_rows, sum(rg.column(c).total_compressed_size for c in range(rg.num_columns))))
    return groups


@dataclass
class Scanner:
    """One scan's settings and running totals."""

    input_root: Path
    output_root: Path
    model: str
    rows_per_part: int
    output_footers_read: int = 0
    input_footers_read: int = 0

    def diff(
        self, in_dir: str, out_dir: str, name: str, st: Stamp, outputs: list[tuple[str, tuple[int, int] | None, int]]
    ) -> tuple[str, list[tuple[tuple[int, int] | None, int]], Issues]:
        """(status, needed jobs as (rows, bytes), issues) of one input."""
        issues: Issues = []
        fresh: list[tuple[tuple[int, int] | None, bool]] = []
        for out_name, rows, size in outputs:
            self.output_footers_read += 1
            path = os.path.join(out_dir, out_name)
            try:
                fp, model = provenance(path, size)
                fresh.append((rows, fp == st.fingerprint and model == self.model))
            except Exception as e:  # pyarrow raises several types for a bad footer
                issues.append((path, f"{e}; its job will be redone"))
                fresh.append((rows, False))
        if any(ok and rows is None for rows, ok in fresh):
            return "up_to_date", [], issues
        self.input_footers_read += 1
        try:
            groups = row_groups(os.path.join(in_dir, name), st.size)
        except Exception as e:  # as above
            issues.append((os.path.join(in_dir, name), str(e)))
            return "unreadable", [], issues
        fresh_parts = sorted(rows for rows, ok in fresh if ok and rows is not None)
        if tiles(fresh_parts, sum(r for r, _ in groups)):
            return "up_to_date", [], issues
        parts = plan_parts(groups, self.rows_per_part)
        planned = [((s, e), b) for s, e, b in parts] if parts else [(None, st.size)]
        jobs = [(rows, b) for rows, b in planned if rows is None or rows not in fresh_parts]
        if not jobs:
            return "up_to_date", [], issues
        return ("modified" if any(not ok for _, ok in fresh) else "missing"), jobs, issues

    def pair(self, rank: int, suffix: str, sub: str) -> dict[str, Any]:
        """Scan one ``suffix/subreddit`` directory pair."""
        in_rel, out_rel = f"{INPUT_DIR}/{suffix}/{sub}", f"{OUTPUT_DIR}/{suffix}/{sub}"
        in_dir, out_dir = str(self.input_root / in_rel), str(self.output_root / out_rel)
        issues: Issues = []
        inputs = parquet_files(in_dir, issues, os.path.realpath(self.input_root))
        outputs = parquet_files(out_dir, issues, os.path.realpath(self.output_root))
        by_input: dict[str, list[tuple[str, tuple[int, int] | None, int]]] = {}
        orphans = []
        for out_name, out_st in outputs.files.items():
            part = parse_part(out_name)
            if out_name in inputs.present:
                by_input.setdefault(out_name, []).append((out_name, None, out_st.size))
            elif part is not None and part[0] in inputs.present:
                by_input.setdefault(part[0], []).append((out_name, part[1], out_st.size))
            elif not inputs.unreadable:
                orphans.append(f"{out_rel}/{out_name}")
        counts = {"files": 0, "up_to_date": 0, "missing": 0, "modified": 0}
        jobs = []
        for name, st in inputs.files.items():
            status, needed, found = self.diff(in_dir, out_dir, name, st, by_input.get(name, []))
            counts["files"] += 1
            if status in counts:
                counts[status] += 1
            issues.extend(found)
            path = f"{in_rel}/{name}"
            for rows, nbytes in needed:
                try:
                    out = output_path(path, rows)
                except UnsafePath as e:
                    issues.append((os.path.join(in_dir, name), str(e)))
                    continue
                jobs.append(
                    PlannedJob(
                        rank, job_id(path, rows, st.fingerprint, self.model), path, out, st.fingerprint, rows, nbytes
                    )
                )
        temps = [f"{out_rel}/{n}" for n in outputs.temps]
        return {"counts": counts, "jobs": jobs, "orphans": orphans, "temps": temps, "issues": issues}


def discover(
    chains: str, embeddings: str, checkpoint: list[str] | None, issues: Issues, roots: tuple[str, str] | None = None
) -> tuple[list[Any], list[str]]:
    """Directory pairs ``(rank, suffix, subreddit)`` and subreddit names by
    rank; symlinks are followed inside ``roots`` (canonical input, output)."""
    in_root, out_root = roots if roots is not None else (None, None)
    in_suffixes = subdirs(chains, issues, in_root) or []
    try:
        out_suffixes = subdirs(embeddings, issues, out_root) or []
    except OSError as e:
        issues.append((embeddings, f"cannot read directory: {_problem(e)}"))
        out_suffixes = []
    per_suffix: list[tuple[str, list[str], list[str]]] = []
    for suffix in sorted(set(in_suffixes) | set(out_suffixes)):
        ins: list[str] = []
        outs: list[str] = []
        known = True
        for base, is_input in ((chains, True), (embeddings, False)):
            if is_input and suffix not in in_suffixes:
                continue
            try:
                found = subdirs(os.path.join(base, suffix), issues, in_root if is_input else out_root) or []
            except OSError as e:
                issues.append((os.path.join(base, suffix), f"cannot read directory: {_problem(e)}"))
                known = known and not is_input
                continue
            (ins if is_input else outs).extend(found)
        if not known:
            outs = [s for s in outs if s in ins]
        per_suffix.append((suffix, ins, outs))
    if checkpoint is not None:
        names = list(dict.fromkeys(checkpoint))
    else:
        names = sorted({s for _, ins, outs in per_suffix for s in ins + outs})
    rank = {n: i for i, n in enumerate(names)}
    pairs = sorted((rank[s], suffix, s) for suffix, ins, outs in per_suffix for s in set(ins + outs) if s in rank)
    if checkpoint is not None:
        found_ranks = {r for r, _, _ in pairs}
        for i, n in enumerate(names):
            if i not in found_ranks:
                problem = f"subreddit {n!r} is in the checkpoint list but has no directory under any suffix"
                issues.append((chains, problem))
    return pairs, names


def scan(
    input_root: str | os.PathLike[str],
    output_root: str | os.PathLike[str],
    model: str,
    *,
    rows_per_part: int,
    subreddits: list[str] | None = None,
) -> dict[str, Any]:
    """Scan and diff, sequentially; same result shape as ``_core.scan``."""
    t0 = time.perf_counter()
    chains = os.path.join(input_root, INPUT_DIR)
    if not os.path.isdir(chains):
        raise FileNotFoundError(f"{chains}: no such directory")
    roots = (os.path.realpath(input_root), os.path.realpath(output_root))
    for tree, root in ((chains, roots[0]), (os.path.join(output_root, OUTPUT_DIR), roots[1])):
        real = os.path.realpath(tree)
        if os.path.isdir(tree) and not real.startswith(root.rstrip("/") + "/"):
            raise ValueError(f"{tree}: symlink leads out of the data root {root} (to {real})")
    issues: Issues = []
    pairs, names = discover(chains, os.path.join(output_root, OUTPUT_DIR), subreddits, issues, roots)
    sc = Scanner(Path(input_root), Path(output_root), model, rows_per_part)
    subs = [[0] * 8 for _ in names]
    jobs: list[Any] = []
    orphans: list[str] = []
    temps: list[str] = []
    for rank, suffix, sub in pairs:
        r = sc.pair(rank, suffix, sub)
        c = r["counts"]
        split = sum(1 for j in r["jobs"] if j.rows is not None)
        for i, v in enumerate(
            (
                c["files"],
                c["up_to_date"],
                c["missing"],
                c["modified"],
                split,
                len(r["jobs"]),
                len(r["orphans"]),
                len(r["issues"]),
            )
        ):
            subs[rank][i] += v
        jobs += r["jobs"]
        orphans += r["orphans"]
        temps += r["temps"]
        issues += r["issues"]
    stats = {
        "dirs": len(pairs),
        "files": sum(s[0] for s in subs),
        "output_footers_read": sc.output_footers_read,
        "input_footers_read": sc.input_footers_read,
        "cache_hits": 0,
        "cache_load": "disabled",
        "cache_saved": False,
        "cache_error": None,
        "seconds": time.perf_counter() - t0,
    }
    return {
        "jobs": jobs,
        "subreddits": [SubredditScan(n, *s) for n, s in zip(names, subs, strict=True)],
        "orphans": orphans,
        "temps": temps,
        "issues": sorted(issues),
        "stats": stats,
        "cancelled": False,
    }
