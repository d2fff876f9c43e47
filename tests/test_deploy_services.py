"""The service definitions in ``deploy/systemd`` and ``deploy/launchd``.

Each unit passes ``systemd-analyze verify`` with no warning at all, and every
definition is checked against what the programs really accept (their own
argument parsers) and against the pairing of restart policy and stop timeout
with the worker's job-timeout watchdog.
"""

from __future__ import annotations

import plistlib
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.rust_worker import rust_worker_binary

ROOT = Path(__file__).resolve().parents[1]
SYSTEMD = ROOT / "deploy" / "systemd"
PLIST = ROOT / "deploy" / "launchd" / "org.embedfleet.worker-python.plist"
ENV_EXAMPLE = SYSTEMD / "embedfleet.env.example"
UNITS = sorted(SYSTEMD.glob("*.service"))
WORKER_UNITS = [u for u in UNITS if u.name.startswith("embedfleet-worker-")]
PREFIX = "/opt/embedfleet/"
_VAR = re.compile(r"\$\{(\w+)\}")

Unit = dict[str, dict[str, list[str]]]


def parse_unit(path: Path) -> Unit:
    """A strict reader of systemd's unit syntax: sections, ``Key=value``,
    backslash continuations, ``#``/``;`` comments. Anything else raises."""
    unit: Unit = {}
    section: dict[str, list[str]] | None = None
    pending = ""
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], {})
            continue
        key, eq, value = line.partition("=")
        if not eq or section is None or not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", key):
            raise ValueError(f"{path.name}:{n}: not a unit line: {raw!r}")
        section.setdefault(key, []).append(value)
    assert not pending, f"{path.name}: dangling continuation"
    return unit


def one(unit: Unit, section: str, key: str) -> str:
    values = unit.get(section, {}).get(key, [])
    assert len(values) == 1, f"{section}.{key}: expected one value, got {values}"
    return values[0]


def environment(unit: Unit) -> dict[str, str]:
    """Variables set by ``Environment=`` lines (the units' defaults)."""
    env: dict[str, str] = {}
    for line in unit["Service"].get("Environment", []):
        for item in shlex.split(line):
            k, _, v = item.partition("=")
            env[k] = v
    return env


def env_file(path: Path) -> dict[str, str]:
    """An ``EnvironmentFile=``: ``KEY=value`` lines and comments only."""
    env: dict[str, str] = {}
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Z_][A-Z0-9_]*)=(\S*)", line)
        assert m, f"{path.name}:{n}: not KEY=value: {raw!r}"
        env[m[1]] = m[2]
    return env


def seconds(span: str) -> float:
    """A systemd time span (``660s``, ``5min``, ``1min 30s``, ``90``) in seconds."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "": 1}
    total = 0.0
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", span):
        total += float(num) * units[unit]
    return total


def exec_argv(unit: Unit, env: dict[str, str]) -> list[str]:
    """``ExecStart`` split as systemd does, ``${VAR}`` filled from ``env``."""
    line = one(unit, "Service", "ExecStart")
    missing = sorted(set(_VAR.findall(line)) - set(env))
    assert not missing, f"ExecStart uses unset variables {missing}"
    return shlex.split(_VAR.sub(lambda m: env[m[1]], line.replace("%H", "host").replace("%i", "0")))


def test_there_are_units_for_the_manager_and_both_workers() -> None:
    names = {u.name for u in UNITS}
    assert names == {
        "embedfleet-manager.service",
        "embedfleet-worker-python@.service",
        "embedfleet-worker-rust@.service",
    }


def _install_prefix(tmp: Path) -> Path:
    """A stand-in for /opt/embedfleet with executables where the units expect
    them (verify checks that each ExecStart names an executable file)."""
    prefix = tmp / "opt-embedfleet"
    (prefix / "venv" / "bin").mkdir(parents=True)
    (prefix / "bin").mkdir()
    (prefix / "venv" / "bin" / "python").symlink_to(Path(sys.executable).resolve())
    worker = prefix / "bin" / "embedfleet-worker"
    worker.write_text("#!/bin/sh\nexit 0\n")
    worker.chmod(worker.stat().st_mode | stat.S_IXUSR)
    return prefix


@pytest.mark.parametrize("unit_path", UNITS, ids=lambda p: p.name)
def test_unit_passes_systemd_analyze_verify_without_a_warning(unit_path: Path, tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is missing: apt-get install systemd (it verifies deploy/systemd)"
    prefix = _install_prefix(tmp_path)
    units = tmp_path / "units"
    units.mkdir()
    target = units / unit_path.name
    target.write_text(unit_path.read_text().replace(PREFIX, f"{prefix}/"))
    # A template is verified through an instance of it.
    name = target.name.replace("@.service", "@0.service")
    proc = subprocess.run(
        [tool, "verify", "--man=no", str(units / name)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=units,
        check=False,
    )
    report = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 0 and not report, report


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a misspelt key and a missing program are reported."""
    bad = tmp_path / "embedfleet-broken.service"
    bad.write_text(UNITS[0].read_text().replace("Restart=", "Restrat=", 1))
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(bad)], capture_output=True, text=True, timeout=60, check=False
    )
    report = proc.stdout + proc.stderr
    assert "Restrat" in report and proc.returncode != 0


@pytest.mark.parametrize("unit_path", UNITS, ids=lambda p: p.name)
def test_unit_restarts_on_failure_only_and_names_its_settings_file(unit_path: Path) -> None:
    unit = parse_unit(unit_path)
    assert one(unit, "Service", "Restart") == "on-failure"
    assert seconds(one(unit, "Service", "RestartSec")) >= 5
    assert int(one(unit, "Unit", "StartLimitBurst")) >= 3
    assert one(unit, "Service", "EnvironmentFile") == "/etc/embedfleet/embedfleet.env"
    assert one(unit, "Service", "User") == "embedfleet"
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


@pytest.mark.parametrize("unit_path", WORKER_UNITS, ids=lambda p: p.name)
def test_worker_refused_by_redis_is_not_restarted(unit_path: Path) -> None:
    """A wrong password or ACL user is no crash: a restart every RestartSec
    would be the retry loop the worker itself no longer runs."""
    from workers.supervision import EXIT_ACCESS_DENIED

    assert one(parse_unit(unit_path), "Service", "RestartPreventExitStatus") == str(EXIT_ACCESS_DENIED)


@pytest.mark.parametrize("unit_path", WORKER_UNITS, ids=lambda p: p.name)
def test_worker_stop_timeout_outlasts_its_job_timeout(unit_path: Path) -> None:
    """SIGTERM lets the worker finish its job, which the watchdog bounds by
    --job-timeout; systemd must wait longer than that before SIGKILL."""
    unit = parse_unit(unit_path)
    env = environment(unit)
    argv = exec_argv(unit, env)
    job_timeout = float(argv[argv.index("--job-timeout") + 1])
    assert one(unit, "Service", "KillSignal") == "SIGTERM"
    assert one(unit, "Service", "KillMode") == "mixed"
    assert seconds(one(unit, "Service", "TimeoutStopSec")) >= job_timeout + 30
    # The same holds with the settings file's values.
    example = env_file(ENV_EXAMPLE)
    assert float(example["EMBEDFLEET_JOB_TIMEOUT"]) + 30 <= seconds(one(unit, "Service", "TimeoutStopSec"))


def test_settings_file_example_defines_every_variable_the_units_use() -> None:
    example = env_file(ENV_EXAMPLE)
    for unit_path in UNITS:
        unit = parse_unit(unit_path)
        used = set(_VAR.findall(one(unit, "Service", "ExecStart")))
        assert used <= set(example) | set(environment(unit)), unit_path.name
    assert {"EMBEDFLEET_REDIS_URL", "EMBEDFLEET_REDIS_PASSWORD", "EMBEDFLEET_DATA_ROOT"} <= set(example)


def _python_argv(unit_name: str) -> list[str]:
    unit = parse_unit(SYSTEMD / unit_name)
    env = {**environment(unit), **env_file(ENV_EXAMPLE)}
    argv = exec_argv(unit, env)
    assert argv[0] == f"{PREFIX}venv/bin/python" and argv[1] == "-m"
    return argv[2:]


def test_python_worker_unit_arguments_are_accepted_by_the_worker() -> None:
    from workers.mps.__main__ import parser

    argv = _python_argv("embedfleet-worker-python@.service")
    assert argv[0] == "workers.mps"
    args = parser().parse_args(argv[1:])
    assert args.job_timeout == 600 and args.worker_id == "python-host-0"


def test_manager_unit_arguments_are_accepted_by_the_manager() -> None:
    from manager.__main__ import build_parser

    argv = _python_argv("embedfleet-manager.service")
    assert argv[0] == "manager"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "serve" and args.keep_serving
    assert str(args.input_root) == env_file(ENV_EXAMPLE)["EMBEDFLEET_DATA_ROOT"]
    unit = parse_unit(SYSTEMD / "embedfleet-manager.service")
    # --keep-serving waits for SIGINT once the run is over.
    assert one(unit, "Service", "KillSignal") == "SIGINT"


def test_rust_worker_unit_flags_are_flags_of_the_binary() -> None:
    unit = parse_unit(SYSTEMD / "embedfleet-worker-rust@.service")
    argv = exec_argv(unit, {**environment(unit), **env_file(ENV_EXAMPLE)})
    assert argv[0] == f"{PREFIX}bin/embedfleet-worker"
    helptext = subprocess.run(
        [str(rust_worker_binary()), "--help"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    for flag in (a for a in argv[1:] if a.startswith("--")):
        assert flag in helptext, f"embedfleet-worker has no {flag}"
    assert environment(unit)["ORT_DYLIB_PATH"].startswith(PREFIX)


# -- launchd ------------------------------------------------------------------

LAUNCHD_KEYS = {
    "Label",
    "ProgramArguments",
    "EnvironmentVariables",
    "WorkingDirectory",
    "RunAtLoad",
    "KeepAlive",
    "ThrottleInterval",
    "ExitTimeOut",
    "ProcessType",
    "SoftResourceLimits",
    "HardResourceLimits",
    "StandardOutPath",
    "StandardErrorPath",
    "Nice",
    "LowPriorityIO",
    "UserName",
    "GroupName",
}


def load_plist() -> dict[str, object]:
    with PLIST.open("rb") as f:
        data = plistlib.load(f)
    assert isinstance(data, dict)
    return data


def test_plist_is_a_well_formed_launchd_job() -> None:
    job = load_plist()
    assert set(job) <= LAUNCHD_KEYS, f"keys launchd does not know: {set(job) - LAUNCHD_KEYS}"
    assert job["Label"] == PLIST.stem
    args = job["ProgramArguments"]
    assert isinstance(args, list) and all(isinstance(a, str) for a in args)
    assert args[0].startswith("/") and args[1:3] == ["-m", "workers.mps"]
    env = job["EnvironmentVariables"]
    assert isinstance(env, dict) and all(isinstance(v, str) for v in env.values())
    assert {"EMBEDFLEET_REDIS_URL", "EMBEDFLEET_DATA_ROOT", "HF_HUB_OFFLINE"} <= set(env)
    for key in ("StandardOutPath", "StandardErrorPath", "WorkingDirectory"):
        value = job[key]
        assert isinstance(value, str) and value.startswith("/"), f"{key} must be absolute (launchd expands no ~)"


def test_plist_restarts_after_a_crash_and_outwaits_the_job_timeout() -> None:
    """KeepAlive.SuccessfulExit=false is launchd's Restart=on-failure; the
    SIGTERM-to-SIGKILL wait (ExitTimeOut) must outlast --job-timeout."""
    job = load_plist()
    assert job["KeepAlive"] == {"SuccessfulExit": False}
    assert job["RunAtLoad"] is True
    throttle = job["ThrottleInterval"]
    assert isinstance(throttle, int) and throttle >= 5
    args = job["ProgramArguments"]
    assert isinstance(args, list)
    job_timeout = float(args[args.index("--job-timeout") + 1])
    exit_timeout = job["ExitTimeOut"]
    assert isinstance(exit_timeout, int) and exit_timeout >= job_timeout + 30


def test_plist_arguments_are_accepted_by_the_worker() -> None:
    from workers.mps.__main__ import parser

    args = load_plist()["ProgramArguments"]
    assert isinstance(args, list)
    parsed = parser().parse_args(args[3:])
    assert parsed.lanes == "default"


def test_plist_lint_rejects_a_broken_file(tmp_path: Path) -> None:
    """plistlib refuses malformed XML, so the checks above can fail."""
    broken = tmp_path / "broken.plist"
    broken.write_bytes(PLIST.read_bytes().replace(b"</dict>\n</plist>", b"</plist>"))
    with pytest.raises(Exception), broken.open("rb") as f:  # noqa: B017 - any parse error will do
        plistlib.load(f)
