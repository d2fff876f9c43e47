"""Who may use the status API.

- Bound to a loopback address (the default, 127.0.0.1), no token is needed,
  and requests must name a loopback host (``Host`` header), which defeats
  DNS rebinding from a web page.
- Bound anywhere else, a token from ``EMBEDFLEET_DASHBOARD_TOKEN`` is
  required and the server refuses to start without one. Clients present it
  as ``Authorization: Bearer <token>``; the dashboard opens with
  ``/?token=<token>`` once, which sets an HttpOnly, SameSite=Strict cookie
  and redirects to ``/`` so the token leaves the address bar.
- Tokens are compared in constant time (``hmac.compare_digest``) and never
  logged (the access log is off; the app logs no request line).
- Actions (POST) must carry ``X-Embedfleet-Action: 1``: a cross-site form
  cannot set that header, so a page the operator visits cannot press the
  buttons on their behalf.
"""

from __future__ import annotations

import hmac
import ipaddress
import os

from bus.errors import EmbedfleetError
from manager.redaction import ENV_DASHBOARD_TOKEN

COOKIE = "embedfleet_token"
ACTION_HEADER = "x-embedfleet-action"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


class InsecureBind(EmbedfleetError):
    """The API would be reachable from other machines without a token."""


def is_loopback(host: str) -> bool:
    if host in ("localhost", "::1", "[::1]"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def token_from_env() -> str | None:
    return os.environ.get(ENV_DASHBOARD_TOKEN) or None


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve beyond loopback without a token."""
    if not is_loopback(host) and not token:
        raise InsecureBind(
            f"refusing to serve the status API on {host}: bound beyond 127.0.0.1 it needs a token; "
            f"set {ENV_DASHBOARD_TOKEN} (e.g. to the output of `openssl rand -hex 24`)"
        )


def token_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison (on bytes, so any text compares safely)."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def host_allowed(host_header: str | None, allowed: tuple[str, ...]) -> bool:
    """Whether a ``Host`` header names one of ``allowed`` (port ignored)."""
    if not host_header:
        return False
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[: host.find("]") + 1]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host in allowed
