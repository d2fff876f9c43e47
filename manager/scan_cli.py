"""``python -m manager scan``: scan the input tree, enqueue what is missing.

    python -m manager scan --input-root ROOT [--output-root ROOT] [--dry-run] [--watch SECONDS]
        [--text-column text] [--id-column id] [--rows-per-part N] [--subreddits-list FILE]
        [--route 'pattern=lane' ...] [--route-size 'BYTES=lane' ...]
        [--redis-url URL] [--namespace NS] [--delete-orphans] [--reconcile] [--redo]

``--data-root`` names both roots at once; without flags the roots come from
``EMBEDFLEET_INPUT_ROOT``/``EMBEDFLEET_OUTPUT_ROOT``, then
``EMBEDFLEET_DATA_ROOT``; the output root defaults to the input root.
``--dry-run`` prints per-subreddit counts and enqueues nothing. ``--watch``
re-scans every SECONDS for new or changed files (the footer cache makes a
re-scan cheap) until Ctrl-C. Problems found on the way (unreadable
directories, broken symlinks, files named .parquet that are not Parquet) are
listed with their path; the scan goes on and the exit status stays 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bus.cli_options import (
    ENV_DATA_ROOT,
    ENV_INPUT_ROOT,
    SUBREDDITS_LIST_FLAGS,
    TEXT_COLUMN_FLAGS,
    RawDescriptionDefaultsHelpFormatter,
    add_root_options,
    roots,
)
from bus.constants import DEFAULT_NAMESPACE, DEFAULT_ROWS_PER_PART
from bus.errors import EmbedfleetError
from bus.settings import ENV_NAMESPACE, ENV_URL, RedisSettings
from manager import scan
from manager.routing import Routes

ISSUES_SHOWN = 50
"""Problems printed in full; the rest are counted (all are in ``--report``)."""

COLUMNS = ("files", "up_to_date", "missing", "modified", "split_parts", "jobs", "orphans", "errors")


def add_job_options(p: argparse.ArgumentParser) -> None:
    """What the jobs are made of: the options ``scan``, ``serve`` and ``run`` share."""
    p.add_argument("--model", help="model id the outputs must carry (default: the installed all-MiniLM-L6-v2's)")
    p.add_argument(*TEXT_COLUMN_FLAGS, dest="text_column", default="text", help="text column of the inputs")
    p.add_argument("--id-column", help="id column copied into the outputs (default: none)")
    p.add_argument(
        "--rows-per-part",
        type=int,
        default=DEFAULT_ROWS_PER_PART,
        metavar="N",
        help="split files of more rows into row-range jobs (0: never)",
    )
    p.add_argument(
        *SUBREDDITS_LIST_FLAGS,
        dest="subreddits_list",
        type=Path,
        metavar="FILE",
        help="checkpoint list of the subreddits to take (default: <input-root>/subreddits_list.json if present)",
    )


def register(sub: Any) -> None:
    p = sub.add_parser(
        "scan",
        help="scan the input tree and enqueue the missing jobs",
        description=__doc__,
        formatter_class=RawDescriptionDefaultsHelpFormatter,
    )
    add_root_options(
        p,
        input_help="input root (holds chains/<suffix>/<subreddit>/)",
        output_help="output root (holds embeddings/)",
        output_default="the input root",
    )
    p.add_argument("--dry-run", action="store_true", help="print what would be enqueued, per subreddit")
    p.add_argument("--watch", type=float, metavar="SECONDS", help="re-scan every SECONDS until Ctrl-C")
    add_job_options(p)
    p.add_argument(
        "--route",
        action="append",
        default=[],
        metavar="PATTERN=LANE",
        help="send subreddits matching a glob to a lane (repeatable, first match wins)",
    )
    p.add_argument(
        "--route-size",
        action="append",
        default=[],
        metavar="BYTES=LANE",
        help="send jobs of at least BYTES (K/M/G allowed) to a lane (repeatable)",
    )
    p.add_argument("--redis-url", default=os.environ.get(ENV_URL), help=f"Redis URL (env {ENV_URL})")
    p.add_argument(
        "--namespace",
        default=os.environ.get(ENV_NAMESPACE),
        help=f"key prefix (env {ENV_NAMESPACE}; default: {DEFAULT_NAMESPACE})",
    )
    p.add_argument("--delete-orphans", action="store_true", help="delete outputs whose input vanished")
    p.add_argument("--reconcile", action="store_true", help="after enqueuing, put back queued jobs a Redis crash lost")
    p.add_argument("--redo", action="store_true", help="enqueue jobs already done again (first scan only)")
    p.add_argument("--no-cache", action="store_true", help="ignore and do not write the footer cache")
    p.add_argument("--threads", type=int, default=0, help="scan threads (default: one per core)")
    p.add_argument("--report", type=Path, metavar="FILE", help="write the full scan report as JSON")
    p.add_argument("--max-scans", type=int, default=0, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def format_report(report: scan.ScanReport) -> str:
    """Per-subreddit counts as an aligned text table with a total line."""
    rows = [[c.name, *(str(getattr(c, k)) for k in COLUMNS)] for c in report.subreddits.values()]
    total = report.totals
    rows.append(["TOTAL", *(str(getattr(total, k)) for k in COLUMNS)])
    head = ["subreddit", *(k.replace("_", " ") for k in COLUMNS)]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    fmt = [
        f"{r[0]:<{widths[0]}}  " + "  ".join(f"{v:>{w}}" for v, w in zip(r[1:], widths[1:], strict=True))
        for r in [head, *rows]
    ]
    return "\n".join(fmt)


def format_issues(issues: list[scan.ScanIssue]) -> str:
    lines = [f"  {i}" for i in issues[:ISSUES_SHOWN]]
    if len(issues) > ISSUES_SHOWN:
        lines.append(f"  ... and {len(issues) - ISSUES_SHOWN} more (see --report)")
    return f"{len(issues)} problem(s) found, the scan went on:\n" + "\n".join(lines)


@contextmanager
def progress_bar() -> Iterator[scan.Progress | None]:
    """A progress bar on stderr when it is a terminal; else nothing."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("dirs"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task("scanning", total=None)

    def update(done: int, total: int, files: int) -> None:
        bar.update(task, completed=done, total=total or None, description=f"scanning ({files:,} files)")

    with bar:
        yield update


class ScanCommand:
    """One ``scan`` invocation: its settings, and one scan cycle."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        r = roots(args, output_defaults_to_input=True)
        if r.input is None or r.output is None:
            raise ValueError(
                f"no input root: give --input-root (or --data-root), or set {ENV_INPUT_ROOT} or {ENV_DATA_ROOT}"
            )
        self.input_root, self.output_root = r.input, r.output
        self.routes = Routes.parse(args.route, args.route_size)
        self.settings: RedisSettings | None = None
        if not args.dry_run:
            if not args.redis_url:
                raise ValueError(f"no Redis: give --redis-url or set {ENV_URL} (or use --dry-run)")
            self.settings = RedisSettings.from_url(args.redis_url, namespace=args.namespace)
        if args.model:
            self.model = args.model
        else:
            from models.source import model_id

            self.model = model_id()

    def plan(self) -> scan.Plan:
        a = self.args
        with progress_bar() as progress:
            return scan.plan(
                self.input_root,
                self.output_root,
                self.model,
                column=a.text_column,
                id_column=a.id_column,
                rows_per_part=a.rows_per_part,
                subreddit_list=a.subreddits_list,
                routes=self.routes,
                progress=progress,
                use_cache=not a.no_cache,
                threads=a.threads,
            )

    def once(self, cycle: int) -> str:
        """Scan, act on the plan, and return a one-line summary."""
        a = self.args
        plan = self.plan()
        if a.report:
            a.report.write_text(json.dumps(plan.report.to_dict(), indent=1), encoding="utf-8")
        if a.dry_run or a.watch is None:
            print(format_report(plan.report))
        if plan.errors:
            print(format_issues(plan.errors), file=sys.stderr)
        t = plan.report.totals
        stats = plan.report.stats
        line = (
            f"scan {cycle}: {t.files} files in {stats['dirs']} dirs, {t.up_to_date} up to date, "
            f"{len(plan.jobs)} jobs needed ({t.split_parts} row-range parts), {t.orphans} orphans, "
            f"{t.errors} problems, {stats['seconds']:.2f} s"
        )
        if a.delete_orphans and plan.orphans:
            line += f"; deleted {scan.delete_orphans(plan)} orphans"
        if self.settings is not None:
            redo = a.redo and cycle == 1
            vanished = [] if redo else scan.requeue_vanished(self.settings, plan.jobs, plan.output_root)
            if vanished:
                print(
                    f"warning: {len(vanished)} jobs were done but their outputs are gone (e.g. {vanished[0].out}): "
                    "queued again",
                    file=sys.stderr,
                )
            res = scan.enqueue(self.settings, plan.jobs, redo=redo)
            line += f"; enqueued {res.new} new, {res.existing} already known on {self.settings.redacted()}"
            if vanished:
                line += f"; {len(vanished)} done jobs re-queued (outputs gone)"
            if a.reconcile:
                line += f"; reconcile re-added {scan.reconcile(self.settings, plan.jobs)}"
        return line


def run(args: argparse.Namespace) -> int:
    try:
        cmd = ScanCommand(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cycle = 0
    try:
        while True:
            cycle += 1
            print(cmd.once(cycle), flush=True)
            if args.watch is None or (args.max_scans and cycle >= args.max_scans):
                return 0
            time.sleep(max(args.watch, 0.0))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, EmbedfleetError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
