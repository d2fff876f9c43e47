"""Command-line conventions every Python role shares (manager, workers,
clusterer): one set of names for the shared storage, read from the same
environment variables, and help that shows each option's default.

The storage flags, the same in every role (the Rust worker's ``cli.rs``
follows them too):

- ``--data-root``: input and output root at once (``EMBEDFLEET_DATA_ROOT``);
- ``--input-root`` (alias ``--input``): the root holding ``chains/``
  (``EMBEDFLEET_INPUT_ROOT``);
- ``--output-root`` (alias ``--output``): the root holding ``embeddings/``
  (``EMBEDFLEET_OUTPUT_ROOT``).

A flag wins over every variable: a root given by a flag (``--input-root``,
then ``--data-root``) is taken as it is; only a root no flag names comes from
``EMBEDFLEET_INPUT_ROOT``/``EMBEDFLEET_OUTPUT_ROOT``, then
``EMBEDFLEET_DATA_ROOT``.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path

ENV_DATA_ROOT = "EMBEDFLEET_DATA_ROOT"
ENV_INPUT_ROOT = "EMBEDFLEET_INPUT_ROOT"
ENV_OUTPUT_ROOT = "EMBEDFLEET_OUTPUT_ROOT"

DATA_ROOT_FLAGS = ("--data-root",)
INPUT_ROOT_FLAGS = ("--input-root", "--input")
OUTPUT_ROOT_FLAGS = ("--output-root", "--output")
TEXT_COLUMN_FLAGS = ("--text-column", "--column")
SUBREDDITS_LIST_FLAGS = ("--subreddits-list", "--subreddits")
"""Canonical name first, then the spellings older commands used (kept working)."""


_STATES_DEFAULT = re.compile(r"\bdefault\b[: ]|%\(default\)", re.IGNORECASE)


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help when it has a default worth
    saying: not ``None``, ``False`` or empty, not already stated in the help,
    and not read from the environment (the help names the variable instead;
    printing its value would show whatever this shell holds, a Redis URL
    with its password for one)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if default is argparse.SUPPRESS or default is None or default is False or default in ([], ""):
            return text
        if not action.option_strings or _STATES_DEFAULT.search(text) or "env " in text:
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


class RawDescriptionDefaultsHelpFormatter(DefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """``DefaultsHelpFormatter`` keeping the description's line breaks."""


def add_root_options(
    p: argparse.ArgumentParser | argparse._ArgumentGroup,
    *,
    with_input: bool = True,
    input_help: str = "root holding chains/",
    output_help: str = "root holding embeddings/",
    output_default: str = "the data root",
    input_default: str = "the data root",
) -> None:
    """``--data-root``, ``--input-root``/``--input``, ``--output-root``/``--output``
    (dests ``data_root``, ``input_root``, ``output_root``; resolve with ``roots``);
    ``with_input=False`` for a command that reads only outputs."""
    p.add_argument(
        *DATA_ROOT_FLAGS, type=Path, metavar="DIR", help=f"input and output root at once (env {ENV_DATA_ROOT})"
    )
    if with_input:
        p.add_argument(
            *INPUT_ROOT_FLAGS,
            dest="input_root",
            type=Path,
            metavar="DIR",
            help=f"{input_help} (env {ENV_INPUT_ROOT}; default: {input_default})",
        )
    p.add_argument(
        *OUTPUT_ROOT_FLAGS,
        dest="output_root",
        type=Path,
        metavar="DIR",
        help=f"{output_help} (env {ENV_OUTPUT_ROOT}; default: {output_default})",
    )


@dataclass(frozen=True)
class Roots:
    """Where this role reads inputs and writes outputs; ``None``: not given."""

    input: Path | None
    output: Path | None


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def roots(args: argparse.Namespace, *, output_defaults_to_input: bool = False) -> Roots:
    """The roots from the flags, then the environment (module docstring).

    ``output_defaults_to_input``: a role whose outputs sit beside its inputs
    by default (the manager) takes the input root for an output root nobody
    named; that counts as given by a flag when the input root was."""
    flag_data = getattr(args, "data_root", None)
    inp = getattr(args, "input_root", None) or flag_data
    out = getattr(args, "output_root", None) or flag_data
    if out is None and inp is not None and output_defaults_to_input:
        out = inp
    env_data = _env_path(ENV_DATA_ROOT)
    if inp is None:
        inp = _env_path(ENV_INPUT_ROOT) or env_data
    if out is None:
        out = _env_path(ENV_OUTPUT_ROOT) or env_data
    if out is None and inp is not None and output_defaults_to_input:
        out = inp
    return Roots(Path(inp) if inp is not None else None, Path(out) if out is not None else None)
