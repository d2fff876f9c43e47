"""Secret redaction for everything the manager writes: journal, state,
summary, API responses and logs.

Builds on ``bus.settings.redact`` (credentials inside URLs plus a list of
known secret values) and adds what an operator's text may carry besides:
values of environment variables whose names say they are secrets, the
dashboard token, ``Authorization: Bearer`` headers, ``password=...``-style
pairs and strings shaped like well-known API keys (OpenAI, GitHub, Hugging
Face, AWS, Slack). Redaction is conservative: a false positive hides a
harmless string, a false negative leaks a credential.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from bus.settings import ENV_PASSWORD, redact

ENV_DASHBOARD_TOKEN = "EMBEDFLEET_DASHBOARD_TOKEN"
MASK = "***"

_SECRET_ENV_NAME = re.compile(r"(PASSWORD|PASSWD|TOKEN|SECRET|API_?KEY|CREDENTIAL|PRIVATE_KEY)", re.IGNORECASE)
_MIN_SECRET_LEN = 6
"""Shorter environment values (``1``, ``true``) would mask ordinary words."""

_KEY_SHAPES = re.compile(
    r"\b("
    r"sk-(?:proj-|live-|test-)?[A-Za-z0-9_-]{16,}"  # OpenAI / Stripe style
    r"|gh[pousr]_[A-Za-z0-9]{20,}"  # GitHub tokens
    r"|github_pat_[A-Za-z0-9_]{20,}"
    r"|hf_[A-Za-z0-9]{20,}"  # Hugging Face
    r"|AKIA[0-9A-Z]{16}"  # AWS access key id
    r"|xox[abprs]-[A-Za-z0-9-]{10,}"  # Slack
    r"|AIza[0-9A-Za-z_-]{30,}"  # Google API key
    r")"
)
_MAYBE = re.compile(
    r"://|sk-|gh[pousr]_|github_pat_|hf_|AKIA|xox[abprs]-|AIza|bearer|token|basic|password|passwd|pwd|secret"
    r"|api[_-]?key|auth",
    re.IGNORECASE,
)
"""Cheap pre-check: text none of the patterns below could match (most paths,
ids and numbers) skips them. Keep it a superset of every pattern."""
_BEARER = re.compile(r"(?i)\b(bearer|token|basic)(\s+)[A-Za-z0-9._~+/=-]{8,}")
_PAIR = re.compile(
    r"(?i)\b((?:[a-z_]*_)?(?:password|passwd|pwd|token|secret|api[_-]?key|auth)[\"']?\s*[=:]\s*[\"']?)"
    r"([^\s\"',;&]{3,})"
)


def secrets_from_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names mark them as secrets."""
    env = os.environ if environ is None else environ
    names = [n for n in env if _SECRET_ENV_NAME.search(n)] + [ENV_PASSWORD, ENV_DASHBOARD_TOKEN]
    return sorted({env[n] for n in names if len(env.get(n, "")) >= _MIN_SECRET_LEN}, key=len, reverse=True)


class Redactor:
    """Removes known secret values and secret-shaped strings from text."""

    def __init__(self, secrets: Iterable[str | None] = (), include_env: bool = True) -> None:
        known = {s for s in secrets if s}
        if include_env:
            known.update(secrets_from_env())
        # Longest first, so a secret containing another is masked whole.
        self._secrets = sorted(known, key=len, reverse=True)
        self._memo: dict[str, str] = {}
        """Short strings seen before (field names, worker ids, types): most of
        a journal record, redacted once."""

    def add(self, secret: str | None) -> None:
        """Learn one more secret value (e.g. a token read after start-up)."""
        if secret and secret not in self._secrets:
            self._secrets = sorted([*self._secrets, secret], key=len, reverse=True)
            self._memo = {}

    def text(self, value: str) -> str:
        """``value`` with every secret replaced by ``***``."""
        short = len(value) <= 64
        if short and value in self._memo:
            return self._memo[value]
        out = self._redact(value)
        if short:
            if len(self._memo) >= 8192:
                self._memo.clear()
            self._memo[value] = out
        return out

    def _redact(self, value: str) -> str:
        if not _MAYBE.search(value) and not any(s in value for s in self._secrets):
            return value
        out = redact(value, self._secrets)
        out = _KEY_SHAPES.sub(MASK, out)
        out = _BEARER.sub(lambda m: f"{m[1]}{m[2]}{MASK}", out)
        return _PAIR.sub(lambda m: f"{m[1]}{MASK}", out)

    def scrub(self, value: Any) -> Any:
        """A copy of a JSON-like value with every string redacted."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.text(str(k)): self.scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub(v) for v in value]
        return value


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's final message."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = self.redactor.text(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # Formatted tracebacks carry exception messages: format now, redact below.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = self.redactor.text(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor.text(record.stack_info)
        return True


def install_log_redaction(redactor: Redactor, logger: logging.Logger | None = None) -> RedactingFilter:
    """Attach a redacting filter to every handler of ``logger`` (root by default)."""
    target = logger or logging.getLogger()
    filt = RedactingFilter(redactor)
    for handler in target.handlers:
        handler.addFilter(filt)
    return filt
