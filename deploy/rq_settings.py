"""Settings for the RQ worker that runs remote clustering, read from the same
environment as every other role, so the password never sits in a command
line (``ps`` shows every argument to every user of the machine).

From a checkout of this repository, on the big-memory host::

    export EMBEDFLEET_REDIS_URL=redis://redis-host:6379/0
    export EMBEDFLEET_REDIS_PASSWORD=…     # or an EnvironmentFile= of mode 600
    rq worker -c deploy.rq_settings -S json embedfleet-cluster

``rq worker`` imports this module (``-c``) and connects with its
``REDIS_URL``; the password comes from the URL or from
``EMBEDFLEET_REDIS_PASSWORD``, as for the manager and the workers. Without
a password for a Redis that wants one, redis-py (RESP3) gets "HELLO must be
called with the client already authenticated": set the variable.
See docs/operations.md, "Remote clustering with a password".
"""

from __future__ import annotations

import os
from urllib.parse import quote

from bus.settings import ENV_URL, RedisSettings


def redis_url_from_env() -> str:
    """The URL rq connects with, password included (it never leaves this process)."""
    raw = os.environ.get(ENV_URL) or os.environ.get("RQ_REDIS_URL")
    if not raw:
        raise SystemExit(f"deploy.rq_settings: set {ENV_URL} (and EMBEDFLEET_REDIS_PASSWORD when Redis has one)")
    s = RedisSettings.from_url(raw)
    auth = ""
    if s.password:
        auth = f"{quote(s.username or '', safe='')}:{quote(s.password, safe='')}@"
    elif s.username:
        auth = f"{quote(s.username, safe='')}@"
    if s.unix_socket:
        return f"unix://{auth}{s.unix_socket}?db={s.db}"
    return f"{'rediss' if s.ssl else 'redis'}://{auth}{s.host}:{s.port}/{s.db}"


REDIS_URL = redis_url_from_env()
