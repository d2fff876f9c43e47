"""``python -m manager``: the manager's command line.

Each subcommand lives in its own module, which exposes ``register(sub)``
adding its parser (with ``func`` set to the handler returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# module -> what it provides; each registers one or more subcommands.
COMMAND_MODULES = (
    "manager.scan_cli",  # scan (dry-run, enqueue, watch)
    "manager.cli",  # serve, status, verify-journal, pause, resume, drain, requeue-failed
    "manager.local_run",  # run: the whole job on one machine
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m manager", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; its exit status (the table is in docs/manager.md).

    A ``StartupError`` is printed as one ``error:`` line, never a traceback."""
    from bus.settings import redact
    from manager.startup import StartupError

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except StartupError as e:
        print(f"error: {redact(str(e))}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
