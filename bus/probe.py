"""Start-up checks of a Redis: one PING without redis-py's own retries, and
whether an error is a refusal (a login or a permission waiting cannot fix)
or an outage. ``manager.startup`` turns them into one-line errors and exit
codes; only ``bus/`` talks to Redis."""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from bus import errors
from bus.redis_transport import connect, translated
from bus.settings import RedisSettings

_REFUSALS = ("NOAUTH", "WRONGPASS", "NOPERM", "HELLO must be called")


def ping_once(settings: RedisSettings, timeout_s: float = 5.0) -> None:
    """One PING without redis-py's own retries; raises what went wrong."""
    client = connect(settings, timeout_s=timeout_s)
    client.set_retry(Retry(NoBackoff(), 0))
    try:
        with translated():
            client.ping()
    finally:
        client.close()


def is_refusal(e: BaseException) -> bool:
    """A refused login or command: permanent, retrying cannot help."""
    denied = getattr(errors, "BusAccessDenied", None)
    if denied is not None and isinstance(e, denied):
        return True
    if isinstance(e, redis.exceptions.AuthenticationError | redis.exceptions.NoPermissionError):
        return True
    return isinstance(e, redis.exceptions.ResponseError) and str(e).startswith(_REFUSALS)


def is_outage(e: BaseException) -> bool:
    """Redis away or answering with an error: worth waiting out."""
    return isinstance(e, errors.BusUnavailable | redis.exceptions.RedisError | OSError)
