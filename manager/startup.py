"""Start-up checks of the manager's commands: one line, no traceback.

Every problem found before a run starts is a ``StartupError`` carrying its
exit status; ``python -m manager`` prints ``error: <message>`` and exits with
it. The message names what failed and where (a Redis URL always with its
password masked). The codes are documented in one table (docs/manager.md,
"Exit status"):

- 2 (``EXIT_USAGE``): a bad argument or configuration (wrong URL scheme, an
  input directory that does not exist); nothing was created.
- 75 (``EXIT_REDIS_UNREACHABLE``, sysexits' EX_TEMPFAIL): Redis did not
  answer for ``--redis-wait`` seconds; a supervisor may try again later.
- 77 (``EXIT_ACCESS_DENIED``, EX_NOPERM, as the workers): Redis refused the
  login (wrong or missing password, an ACL user without a permission).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from bus.probe import is_outage, is_refusal, ping_once
from bus.settings import ENV_PASSWORD, ENV_URL, RedisSettings

log = logging.getLogger("embedfleet.manager")

EXIT_USAGE = 2
EXIT_REDIS_UNREACHABLE = 75
EXIT_ACCESS_DENIED = 77

DEFAULT_REDIS_WAIT_S = 60.0
"""How long ``serve`` and ``run`` wait for Redis at start before giving up."""
BACKOFF_FIRST_S = 0.25
BACKOFF_MAX_S = 10.0
"""Waits between attempts: 0.25 s doubling to 10 s, as the workers do."""


class StartupError(Exception):
    """A command cannot start; ``str()`` is the one line to print."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def settings_from_url(url: str | None, namespace: str | None) -> RedisSettings:
    """Settings from ``--redis-url``; a bad or missing URL is a usage error."""
    if not url:
        raise StartupError(
            f"no Redis: pass --redis-url or set {ENV_URL} (for one machine, `python -m manager run` "
            "starts an embedded Redis)"
        )
    try:
        return RedisSettings.from_url(url, namespace=namespace)
    except ValueError as e:
        raise StartupError(f"--redis-url: {e}") from None


def check_input_root(root: Path, what: str = "--input") -> None:
    """The input root must exist and hold ``chains/``: checked before anything is created."""
    if not root.is_dir():
        raise StartupError(f"{what} {root}: no such directory")
    if not (root / "chains").is_dir():
        raise StartupError(f"{what} {root}: no chains/ directory in it (give the root that holds chains/)")


def check_file(path: Path | None, what: str) -> None:
    if path is not None and not path.is_file():
        raise StartupError(f"{what} {path}: no such file")


def _refusal_message(settings: RedisSettings, e: BaseException) -> str:
    hint = ""
    if not settings.password and ENV_PASSWORD not in str(e):
        hint = f"; no password was given: put it in the URL or set {ENV_PASSWORD}"
    return f"Redis at {settings.redacted()} refused the login: {e}{hint}"


def wait_for_redis(
    settings: RedisSettings,
    wait_s: float = DEFAULT_REDIS_WAIT_S,
    *,
    ping: Callable[[RedisSettings], None] = ping_once,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Return once Redis answers; retry with backoff for ``wait_s`` seconds.

    A refused login ends at once (``EXIT_ACCESS_DENIED``): waiting cannot
    fix a password. Otherwise, after ``wait_s``: ``EXIT_REDIS_UNREACHABLE``."""
    deadline = clock() + max(0.0, wait_s)
    delay = BACKOFF_FIRST_S
    where = settings.redacted()
    while True:
        try:
            ping(settings)
            return
        except Exception as e:  # every failure is reported as one line, never a traceback
            if is_refusal(e):
                raise StartupError(_refusal_message(settings, e), EXIT_ACCESS_DENIED) from None
            if not is_outage(e):
                raise StartupError(f"Redis at {where}: {type(e).__name__}: {e}") from None
            left = deadline - clock()
            if left <= 0:
                raise StartupError(
                    f"cannot reach Redis at {where} ({e}); gave up after {wait_s:.0f} s (--redis-wait)",
                    EXIT_REDIS_UNREACHABLE,
                ) from None
            pause = min(delay, left)
            log.warning("Redis unavailable at %s (%s); trying again in %.2f s", where, e, pause)
            sleep(pause)
            delay = min(delay * 2, BACKOFF_MAX_S)
