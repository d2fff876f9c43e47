# Twin: rust/worker/src/settings.rs (docs/parity.md)
"""Typed Redis settings built from a URL, and redaction of secrets.

A password may come from the URL (``redis://:pw@host:6379/0``) or from
``EMBEDFLEET_REDIS_PASSWORD``; it never appears in a log, an event, an error
or the journal: everything that prints a URL prints ``redacted()``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from bus.constants import DEFAULT_NAMESPACE

ENV_URL = "EMBEDFLEET_REDIS_URL"
ENV_PASSWORD = "EMBEDFLEET_REDIS_PASSWORD"
ENV_NAMESPACE = "EMBEDFLEET_NAMESPACE"

_URL_CRED = re.compile(r"(?P<scheme>rediss?|unix)://(?P<user>[^:@/\s]*):(?P<pw>[^@\s]+)@")


@dataclass(frozen=True)
class RedisSettings:
    """Where the bus is and how to log in; ``repr`` never shows the password."""

    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl: bool = False
    unix_socket: str | None = None
    namespace: str = DEFAULT_NAMESPACE

    @classmethod
    def from_url(cls, url: str, namespace: str | None = None) -> RedisSettings:
        """Parse ``redis://``, ``rediss://`` or ``unix://`` URLs."""
        u = urlsplit(url)
        password = unquote(u.password) if u.password else os.environ.get(ENV_PASSWORD) or None
        ns = namespace or os.environ.get(ENV_NAMESPACE) or DEFAULT_NAMESPACE
        if u.scheme == "unix":
            return cls(unix_socket=u.path, password=password, namespace=ns)
        if u.scheme not in ("redis", "rediss"):
            raise ValueError(f"unsupported Redis URL scheme {u.scheme!r} (use redis://, rediss:// or unix://)")
        db = int(u.path.lstrip("/") or 0)
        return cls(
            host=u.hostname or "127.0.0.1",
            port=u.port or 6379,
            db=db,
            username=unquote(u.username) if u.username else None,
            password=password,
            ssl=u.scheme == "rediss",
            namespace=ns,
        )

    def redacted(self) -> str:
        """A URL safe to print: the password replaced by ``***``."""
        auth = ""
        if self.password:
            auth = f"{self.username or ''}:***@"
        if self.unix_socket:
            return f"unix://{auth}{self.unix_socket}"
        scheme = "rediss" if self.ssl else "redis"
        return f"{scheme}://{auth}{self.host}:{self.port}/{self.db}"

    def secrets(self) -> list[str]:
        """Values that must be redacted wherever text is written."""
        return [self.password] if self.password else []


def redact(text: str, secrets: list[str] | None = None) -> str:
    """Remove credentials from URLs in ``text`` and every listed secret."""
    text = _URL_CRED.sub(lambda m: f"{m['scheme']}://{m['user']}:***@", text)
    for s in secrets or []:
        if s:
            text = text.replace(s, "***")
    return text
