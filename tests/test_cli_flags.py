"""One flag vocabulary across the roles (``bus/cli_options.py``): every
role's ``--help`` lists and accepts the canonical names and the spellings
older commands used, shows its defaults, and the storage roots come from the
same environment variables in every role, a flag winning over them."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from bus.cli_options import DefaultsHelpFormatter, roots
from tests.support.rust_worker import rust_worker_binary
from tests.support.scan_tree import MODEL, Tree

ROOT_ENV = ("EMBEDFLEET_DATA_ROOT", "EMBEDFLEET_INPUT_ROOT", "EMBEDFLEET_OUTPUT_ROOT")

STORAGE = {"--data-root": (), "--input-root": ("--input",), "--output-root": ("--output",)}
JOBS = {"--text-column": ("--column",), "--subreddits-list": ("--subreddits",), "--id-column": ()}
CANONICAL: dict[str, dict[str, tuple[str, ...]]] = {
    "manager serve": {**STORAGE, **JOBS, "--keep-serving": ()},
    "manager scan": {**STORAGE, **JOBS},
    "manager status": {"--data-root": (), "--output-root": ("--output",)},
    "manager run": {"--data-root": ("--data",), **JOBS, "--keep-serving": ()},
    "python worker": dict(STORAGE),
    "clusterer": {**STORAGE, "--text-column": ("--column",), "--subreddits-list": ("--subreddits",)},
    "clusterer neighbours": {**STORAGE, "--text-column": ("--column",)},
}
"""Role -> canonical flag -> the older spellings it also accepts."""


@pytest.fixture(autouse=True)
def no_root_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*ROOT_ENV, "EMBEDFLEET_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)


def manager_sub(name: str) -> Callable[[], argparse.ArgumentParser]:
    def build() -> argparse.ArgumentParser:
        from manager.__main__ import build_parser

        sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
        return sub.choices[name]  # type: ignore[no-any-return]

    return build


def worker_parser() -> argparse.ArgumentParser:
    from workers.mps.__main__ import parser

    return parser()


def clusterer_parser() -> argparse.ArgumentParser:
    from clusterer.cli import build_parser

    return build_parser()


def neighbours_parser() -> argparse.ArgumentParser:
    from clusterer.neighbours import build_parser

    return build_parser()


PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "manager serve": manager_sub("serve"),
    "manager scan": manager_sub("scan"),
    "manager status": manager_sub("status"),
    "manager run": manager_sub("run"),
    "python worker": worker_parser,
    "clusterer": clusterer_parser,
    "clusterer neighbours": neighbours_parser,
}


def option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action:
    return parser._option_string_actions[flag]


@pytest.mark.parametrize("role", sorted(CANONICAL))
def test_every_role_lists_and_accepts_the_canonical_flags_and_their_old_spellings(role: str) -> None:
    parser = PARSERS[role]()
    helptext = parser.format_help()
    for flag, aliases in CANONICAL[role].items():
        canonical = option(parser, flag)
        for spelling in (flag, *aliases):
            assert re.search(rf"(^|[\s,]){re.escape(spelling)}\b", helptext), f"{role} --help lacks {spelling}"
            assert option(parser, spelling) is canonical, f"{role}: {spelling} is not {flag}"
            argv = [spelling] if canonical.nargs == 0 else [spelling, "somewhere"]
            parsed = getattr(parser.parse_args(argv), canonical.dest)
            assert parsed in (True, "somewhere", Path("somewhere")), (role, spelling, parsed)


def test_the_rust_worker_lists_and_accepts_the_storage_flags() -> None:
    helptext = subprocess.run(
        [str(rust_worker_binary()), "--help"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    for flag, aliases in STORAGE.items():
        assert flag in helptext
        for alias in aliases:
            assert re.search(rf"alias(?:es)?: [^\]]*{alias.lstrip('-')}\b", helptext), f"no alias {alias}"


def _stated_default(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    return parser._get_formatter()._format_action(action)


@pytest.mark.parametrize("role", sorted(PARSERS))
def test_help_states_every_default(role: str) -> None:
    parser = PARSERS[role]()
    assert issubclass(parser.formatter_class, DefaultsHelpFormatter)  # type: ignore[arg-type]
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        if action.default in (None, False, [], argparse.SUPPRESS):
            continue
        text = " ".join(_stated_default(parser, action).split())
        assert "default" in text, f"{role} {action.option_strings[0]}: no default in {text!r}"
    help_once = parser.format_help()
    assert "(default: None)" not in help_once and "(default: False)" not in help_once


# -- the environment ---------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "env", "expected"),
    [
        ({}, {"EMBEDFLEET_DATA_ROOT": "/d"}, ("/d", "/d")),
        ({}, {"EMBEDFLEET_DATA_ROOT": "/d", "EMBEDFLEET_INPUT_ROOT": "/i"}, ("/i", "/d")),
        ({}, {"EMBEDFLEET_INPUT_ROOT": "/i", "EMBEDFLEET_OUTPUT_ROOT": "/o"}, ("/i", "/o")),
        ({"data_root": "/f"}, {"EMBEDFLEET_INPUT_ROOT": "/i"}, ("/f", "/f")),
        ({"input_root": "/fi"}, {"EMBEDFLEET_DATA_ROOT": "/d"}, ("/fi", "/d")),
        ({"input_root": "/fi", "data_root": "/f"}, {"EMBEDFLEET_OUTPUT_ROOT": "/o"}, ("/fi", "/f")),
        ({}, {}, (None, None)),
    ],
)
def test_a_root_flag_wins_over_every_variable(
    monkeypatch: pytest.MonkeyPatch, flags: dict[str, str], env: dict[str, str], expected: tuple[str | None, ...]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = argparse.Namespace(**{"data_root": None, "input_root": None, "output_root": None, **flags})
    r = roots(args)
    assert (r.input, r.output) == tuple(Path(p) if p else None for p in expected)


def test_the_manager_takes_its_output_root_from_the_input_root_only_when_nothing_else_names_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = argparse.Namespace(data_root=None, input_root=Path("/in"), output_root=None)
    assert roots(args, output_defaults_to_input=True).output == Path("/in")
    monkeypatch.setenv("EMBEDFLEET_INPUT_ROOT", "/env-in")
    assert roots(argparse.Namespace(), output_defaults_to_input=True).output == Path("/env-in")
    monkeypatch.setenv("EMBEDFLEET_OUTPUT_ROOT", "/env-out")
    assert roots(argparse.Namespace(), output_defaults_to_input=True).output == Path("/env-out")


def manager(*argv: str) -> int:
    from manager.__main__ import main

    return main(list(argv))


def test_manager_serve_reads_the_data_root_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ("serve", "--redis-url", "redis://127.0.0.1:1/0", "--no-api", "--no-advertise", "--redis-wait", "0")
    assert manager(*base) == 2
    assert "no input root: pass --input-root" in capsys.readouterr().err
    missing = tmp_path / "nonexistent"
    monkeypatch.setenv("EMBEDFLEET_DATA_ROOT", str(missing))
    assert manager(*base) == 2
    assert f"{missing}: no such directory" in capsys.readouterr().err
    assert not missing.exists(), "nothing is created on bad input"


def test_manager_scan_reads_the_roots_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = Tree(tmp_path)
    tree.add_input("2024-01/cats/a.parquet")
    tree.add_input("2024-01/dogs/b.parquet")
    tree.add_output("2024-01/cats/a.parquet")
    monkeypatch.setenv("EMBEDFLEET_INPUT_ROOT", str(tree.input))
    monkeypatch.setenv("EMBEDFLEET_OUTPUT_ROOT", str(tree.output))
    assert manager("scan", "--dry-run", "--model", MODEL, "--no-cache") == 0
    out = capsys.readouterr().out
    assert "2 files" in out and "1 up to date" in out and "1 jobs needed" in out, out
    monkeypatch.delenv("EMBEDFLEET_INPUT_ROOT")
    monkeypatch.delenv("EMBEDFLEET_OUTPUT_ROOT")
    monkeypatch.setenv("EMBEDFLEET_DATA_ROOT", str(tree.input))
    assert manager("scan", "--dry-run", "--model", MODEL, "--no-cache") == 0
    assert "2 jobs needed" in capsys.readouterr().out, "outputs under the data root: none yet"


def test_manager_status_reads_the_output_root_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from manager import status_view

    seen: list[Path | None] = []

    def status_main(settings: object, run_dir: Path | None, output_root: Path | None, *_: object) -> int:
        seen.append(output_root)
        return 0

    monkeypatch.setattr(status_view, "main", status_main)
    monkeypatch.setenv("EMBEDFLEET_DATA_ROOT", str(tmp_path / "d"))
    assert manager("status") == 0
    monkeypatch.setenv("EMBEDFLEET_OUTPUT_ROOT", str(tmp_path / "o"))
    assert manager("status") == 0
    assert manager("status", "--output", str(tmp_path / "flag")) == 0
    assert seen == [tmp_path / "d", tmp_path / "o", tmp_path / "flag"]


def test_manager_run_reads_the_data_root_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parse = manager_sub("run")
    assert parse().parse_args([]).data == Path("data")
    monkeypatch.setenv("EMBEDFLEET_DATA_ROOT", str(tmp_path))
    assert parse().parse_args([]).data == tmp_path
    assert parse().parse_args(["--data", "elsewhere"]).data == Path("elsewhere")


def test_the_python_worker_reads_the_roots_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers.mps.__main__ import data_roots

    (tmp_path / "in").mkdir()
    monkeypatch.setenv("EMBEDFLEET_INPUT_ROOT", str(tmp_path / "in"))
    monkeypatch.setenv("EMBEDFLEET_OUTPUT_ROOT", str(tmp_path / "out"))
    got = data_roots(worker_parser().parse_args([]))
    assert (got.input_root, got.output_root) == ((tmp_path / "in").resolve(), (tmp_path / "out").resolve())


def test_the_clusterer_reads_the_roots_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clusterer.cli import config_from_args

    monkeypatch.setenv("EMBEDFLEET_DATA_ROOT", str(tmp_path))
    cfg = config_from_args(clusterer_parser().parse_args(["--output", str(tmp_path / "o")]))
    assert (cfg.input_root, cfg.output_root) == (tmp_path.resolve(), (tmp_path / "o").resolve())


def test_the_rust_worker_reads_the_roots_from_the_environment_and_a_flag_wins(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in (*ROOT_ENV, "EMBEDFLEET_REDIS_URL")}
    env |= {"EMBEDFLEET_INPUT_ROOT": str(tmp_path / "missing"), "EMBEDFLEET_OUTPUT_ROOT": str(tmp_path / "o")}

    def worker(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(rust_worker_binary()), *argv], env=env, capture_output=True, text=True, timeout=30, check=False
        )

    proc = worker()
    assert proc.returncode == 2 and f"input root {tmp_path / 'missing'} is not a directory" in proc.stderr
    proc = worker("--data-root", str(tmp_path))
    assert proc.returncode == 2 and "no Redis URL" in proc.stderr, "the flag's root was taken, not the variable's"
