"""The dashboard address a person can open, which is not always the one the
API binds: inside a container the manager listens on ``0.0.0.0:8377`` while
the host publishes that port somewhere else (Compose's
``EMBEDFLEET_DASHBOARD_PUBLISH``, e.g. ``127.0.0.1:8377``).

``EMBEDFLEET_DASHBOARD_PUBLISHED`` carries that published ``[HOST:]PORT`` into
the manager (the Compose file sets it); the start-up line then names the
published address and says where the manager itself listens.
"""

from __future__ import annotations

import os

ENV_PUBLISHED = "EMBEDFLEET_DASHBOARD_PUBLISHED"
"""``[HOST:]PORT`` the dashboard's port is published on, as Compose's ``ports:`` takes it."""
ANY_ADDRESS = {"", "0.0.0.0", "::", "[::]", "*"}


def published_url(spec: str) -> str | None:
    """``http://HOST:PORT/`` for a published ``[HOST:]PORT``; a wildcard host
    (published on every interface) is shown as 127.0.0.1, reachable from the
    host itself. None when the spec names no port."""
    spec = spec.strip()
    host, sep, port = spec.rpartition(":")
    if not sep:
        host, port = "", spec
    if not port.isdigit():
        return None
    if host in ANY_ADDRESS:
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def display_url(listen_url: str, environ: dict[str, str] | None = None) -> str:
    """The address to show a person: the published one when there is one,
    else the one the manager listens on (with a trailing slash)."""
    env = os.environ if environ is None else environ
    return published_url(env.get(ENV_PUBLISHED, "")) or f"{listen_url}/"


def announcement(listen_url: str, environ: dict[str, str] | None = None) -> str:
    """The start-up line's address part: the published address when there is
    one, else the one the manager listens on."""
    env = os.environ if environ is None else environ
    url = published_url(env.get(ENV_PUBLISHED, ""))
    if url is None:
        return f"{listen_url}/"
    return f"{url} (published on the host; the manager listens on {listen_url} inside its container)"
