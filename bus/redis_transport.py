# Twin: rust/worker/src/bus/redis_bus.rs (docs/parity.md)
"""The real bus: Redis Streams with one consumer group per lane.

Every state change goes through one of the Lua scripts in ``bus/lua`` (each
lists its keys in its header), so it is atomic and checks ownership. Errors
from redis-py are translated to ``BusUnavailable`` at this boundary.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any, TypeVar

import redis
import redis.exceptions as rexc
from redis.backoff import ExponentialBackoff, ExponentialWithJitterBackoff, NoBackoff
from redis.retry import Retry

from bus import constants as c
from bus import wire
from bus.errors import BusAccessDenied, BusUnavailable, InvalidMessage, ProtocolError
from bus.keys import Keys
from bus.messages import Job, with_event_id
from bus.settings import RedisSettings
from bus.transport import Controls, Delivery, Outcome, WorkerRecord

T = TypeVar("T")
RedisClient = redis.Redis
RedisError = rexc.RedisError
"""The root of redis-py's errors, for callers outside ``bus/`` that report
any Redis fault (``translated()`` already turns outages into ``BusUnavailable``)."""
"""The client type ``connect`` returns, for modules outside ``bus/`` that hold
one without importing ``redis`` (only ``bus/`` does: pyproject's ruff rules)."""
SCRIPT_NAMES = ("enqueue", "renew", "complete", "retry", "dead", "promote", "trim", "heartbeat")
"""The bus's scripts; the reuse store's (``reuse_claim``, ``reuse_put``) are
loaded by ``bus.reuse_redis``."""


def script_source(name: str) -> str:
    """Text of one of the shared Lua scripts (``bus/lua/<name>.lua``)."""
    return resources.files("bus").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


class _RetryOutages(Retry):
    """redis-py's own retry of connection faults, less refused credentials:
    its ``AuthenticationError`` is a ``ConnectionError``, and retrying it
    (nested, on connect and on the command) took up to a minute before the
    worker could say the password was wrong."""

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        def retryable(e: Exception) -> bool:
            return not isinstance(e, rexc.AuthenticationError) and (is_retryable is None or is_retryable(e))

        return super().call_with_retry(do, fail, is_retryable=retryable, with_failure_count=with_failure_count)


def connect(settings: RedisSettings, timeout_s: float = 10.0) -> redis.Redis:
    """A redis-py client for the settings (bytes responses)."""
    common: dict[str, Any] = dict(
        db=settings.db,
        username=settings.username,
        password=settings.password,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=30,
        retry=_RetryOutages(ExponentialWithJitterBackoff(base=1, cap=10), 3),  # redis-py's default, less refusals
    )
    if settings.unix_socket:
        return redis.Redis(unix_socket_path=settings.unix_socket, **common)
    return redis.Redis(host=settings.host, port=settings.port, ssl=settings.ssl, **common)


def set_retries(client: redis.Redis, retries: int, base_s: float = 0.05, cap_s: float = 0.2) -> None:
    """How often redis-py itself retries a command after a connection fault
    (exponential backoff from ``base_s`` up to ``cap_s``; 0: never). Callers
    that must answer a person at once (a status page, an operator's command,
    a start-up check) fail fast with few or none."""
    backoff = ExponentialBackoff(cap=cap_s, base=base_s) if retries else NoBackoff()
    client.set_retry(Retry(backoff, retries))


def _refusal(e: rexc.AuthenticationError | rexc.NoPermissionError) -> str:
    """Why Redis refused this client, for the one line a worker prints."""
    if isinstance(e, rexc.NoPermissionError):
        return (
            f"permission denied (NOPERM {e}): the ACL user lacks a command or key the worker needs "
            "(deploy/redis/make-acl.sh)"
        )
    if "invalid username-password" in str(e) or "WRONGPASS" in str(e):
        return (
            "authentication failed (wrong user name or password, or the user is disabled): "
            "check the password of --redis-url or EMBEDFLEET_REDIS_PASSWORD"
        )
    return "authentication required (no password given): give one in --redis-url or EMBEDFLEET_REDIS_PASSWORD"


@contextmanager
def translated(location: str | None = None) -> Iterator[None]:
    """Turn redis-py's errors into the error tree: connection faults into
    ``BusUnavailable`` (wait and try again); refused credentials or
    permissions (WRONGPASS, NOAUTH, NOPERM) into ``BusAccessDenied`` naming
    ``location``, a URL with the password masked (``RedisSettings.redacted``)."""
    try:
        yield
    except (rexc.AuthenticationError, rexc.NoPermissionError) as e:  # before ConnectionError, their base
        where = f"Redis at {location}" if location else "Redis"
        raise BusAccessDenied(f"{where} refused access: {_refusal(e)}") from None
    except (rexc.ConnectionError, rexc.TimeoutError, rexc.BusyLoadingError) as e:
        raise BusUnavailable(f"Redis unavailable: {type(e).__name__}") from None
    except rexc.ResponseError as e:
        if str(e).startswith(("LOADING", "MASTERDOWN", "TRYAGAIN")):
            raise BusUnavailable(f"Redis not ready: {str(e).split(' ')[0]}") from None
        raise


def _translating(fn: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(fn)
    def wrapper(self: RedisTransport, *args: Any, **kwargs: Any) -> T:
        with translated(self.location):
            return fn(self, *args, **kwargs)

    return wrapper


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def _location(client: redis.Redis) -> str:
    """Where a client connects, password masked."""
    kw = client.connection_pool.connection_kwargs
    where = RedisSettings(
        host=str(kw.get("host", "127.0.0.1")),
        port=int(kw.get("port", 6379)),
        db=int(kw.get("db", 0)),
        username=kw.get("username"),
        password=kw.get("password"),
        unix_socket=kw.get("path"),
    )
    return where.redacted()


_Entry = tuple[str, str, dict[Any, Any]]
"""A stream entry read but not yet decoded: lane, entry id, fields."""


class RedisTransport:
    """``Transport`` over a real Redis."""

    def __init__(
        self,
        client: redis.Redis,
        namespace: str = c.DEFAULT_NAMESPACE,
        lease_ms: int = c.DEFAULT_LEASE_MS,
        autoclaim_every_s: float = 1.0,
        location: str | None = None,
    ) -> None:
        self.r = client
        self.location = location or _location(client)
        """The Redis URL with the password masked, for error messages."""
        self.keys = Keys(namespace)
        self.lease_ms = lease_ms
        self.autoclaim_every_s = autoclaim_every_s
        self._scripts = {n: client.register_script(script_source(n)) for n in SCRIPT_NAMES}
        self._last_autoclaim = 0.0
        self._last_promote = 0.0
        self._buffer: list[_Entry] = []

    @classmethod
    def from_settings(cls, settings: RedisSettings, **kw: Any) -> RedisTransport:
        return cls(connect(settings), namespace=settings.namespace, location=settings.redacted(), **kw)

    def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return self._scripts[name](keys=keys, args=args)

    # -- producing -------------------------------------------------------
    @_translating
    def enqueue(self, job: Job, redo: bool = False) -> bool:
        """Idempotent enqueue; ``True`` when the job was new."""
        k = self.keys
        keys = [k.state, k.queue(job.lane), k.stats, k.lanes]
        return bool(self._run("enqueue", keys, [job.id, job.to_json(), job.lane, "redo" if redo else ""]))

    @_translating
    def ensure_lanes(self, lanes: list[str]) -> None:
        for lane in lanes:
            try:
                self.r.xgroup_create(self.keys.queue(lane), c.GROUP, id="0", mkstream=True)
            except rexc.ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise

    # -- consuming -------------------------------------------------------
    @_translating
    def claim(self, consumer: str, lanes: list[str], block_ms: int) -> Delivery | None:
        """As ``Transport.claim``; a message no worker can read is
        dead-lettered with its reason and raised as ``InvalidMessage`` (the
        next call goes on with the next entry)."""
        now = time.monotonic()
        if now - self._last_promote >= 1.0:
            self._last_promote = now
            for lane in lanes:
                self._run("promote", [self.keys.delayed(lane), self.keys.queue(lane)], [100])
        if now - self._last_autoclaim >= self.autoclaim_every_s:
            self._last_autoclaim = now
            d = self._autoclaim(consumer, lanes)
            if d is not None:
                return d
        # Lanes are read one at a time, in the order given (their priority):
        # XREADGROUP over several streams with COUNT 1 hands out one entry
        # *per stream*, and an entry handed out but not returned would sit
        # in this consumer's pending list until its lease expired.
        while self._buffer:
            lane, entry_id, fields = self._buffer.pop(0)
            if self._run("renew", [self.keys.queue(lane)], [c.GROUP, entry_id, consumer]):
                return self._delivery(consumer, lane, entry_id, fields, 1)
        for lane in lanes:
            resp: Any = self.r.xreadgroup(c.GROUP, consumer, {self.keys.queue(lane): ">"}, count=1)
            for _stream, entries in resp or []:
                for entry_id, fields in entries:
                    return self._delivery(consumer, lane, _s(entry_id), fields, 1)
        if block_ms <= 0:
            return None
        streams = {self.keys.queue(lane): ">" for lane in lanes}
        resp = self.r.xreadgroup(c.GROUP, consumer, streams, count=1, block=block_ms)  # type: ignore[arg-type]
        got = [
            (_s(stream).rsplit(":", 1)[-1], _s(entry_id), fields)
            for stream, entries in resp or []
            for entry_id, fields in entries
        ]
        # Decoded when their turn comes: an unreadable one must not hold up
        # (or lose) the others.
        self._buffer.extend(got[1:])
        if got:
            return self._delivery(consumer, *got[0], 1)
        # The queue was empty: look again for expired leases at once.
        self._last_autoclaim = 0.0
        return None

    def _autoclaim(self, consumer: str, lanes: list[str]) -> Delivery | None:
        for lane in lanes:
            q = self.keys.queue(lane)
            resp = self.r.xautoclaim(q, c.GROUP, consumer, self.lease_ms, "0-0", count=1)
            claimed = resp[1] if len(resp) > 1 else []
            for entry_id, fields in claimed:
                if fields is None:
                    continue
                pend = self.r.xpending_range(q, c.GROUP, min=entry_id, max=entry_id, count=1)
                n = int(pend[0]["times_delivered"]) if pend else 1
                return self._delivery(consumer, lane, _s(entry_id), fields, n)
        return None

    def _delivery(self, consumer: str, lane: str, entry_id: str, fields: dict[Any, Any], n: int) -> Delivery:
        raw = fields.get(c.JOB_FIELD.encode(), fields.get(c.JOB_FIELD))
        try:
            if raw is None:
                raise InvalidMessage(wire.NO_JOB_FIELD, f"the entry has no {c.JOB_FIELD!r} field")
            job = Job.from_json(raw)
        except ProtocolError as e:
            # A message no worker can read: dead-letter it under its entry id,
            # keeping at most MAX_MESSAGE_BYTES of it, as text.
            kept = raw.encode() if isinstance(raw, str) else raw or b""
            stub = Job(path="-", out="-", fingerprint="-", model="-", lane=lane, id=f"entry:{entry_id}")
            self._run(
                "dead",
                [self.keys.queue(lane), self.keys.state, self.keys.stats, self.keys.errors, self.keys.dead],
                [
                    c.GROUP,
                    entry_id,
                    consumer,
                    stub.id,
                    kept[: c.MAX_MESSAGE_BYTES].decode("utf-8", "replace"),
                    str(e),
                    n,
                    consumer,
                ],
            )
            raise
        return Delivery(job=job, lane=lane, entry_id=entry_id, deliveries=n)

    @_translating
    def renew(self, consumer: str, d: Delivery) -> bool:
        return bool(self._run("renew", [self.keys.queue(d.lane)], [c.GROUP, d.entry_id, consumer]))

    @_translating
    def complete(
        self, consumer: str, d: Delivery, rows: int, skipped: bool = False, model_calls: int = 0, rows_reused: int = 0
    ) -> Outcome:
        k = self.keys
        res = self._run(
            "complete",
            [k.queue(d.lane), k.state, k.stats, k.errors],
            [c.GROUP, d.entry_id, consumer, d.job.id, rows, "skip" if skipped else "", model_calls, rows_reused],
        )
        return Outcome(int(res))

    @_translating
    def retry(self, consumer: str, d: Delivery, reason: str, delay_ms: int) -> Outcome:
        k = self.keys
        nxt = d.job.next_attempt()
        # Crash re-deliveries count as attempts too: carry them into the next one.
        nxt = type(nxt)(**{**nxt.__dict__, "attempt": d.attempts + 1})
        res = self._run(
            "retry",
            [k.queue(d.lane), k.delayed(d.lane), k.stats, k.errors],
            [c.GROUP, d.entry_id, consumer, d.job.id, nxt.to_json(), reason, delay_ms],
        )
        return Outcome.DONE if int(res) == 1 else Outcome.LEASE_LOST

    @_translating
    def dead_letter(self, consumer: str, d: Delivery, reason: str, worker_id: str) -> Outcome:
        k = self.keys
        res = self._run(
            "dead",
            [k.queue(d.lane), k.state, k.stats, k.errors, k.dead],
            [c.GROUP, d.entry_id, consumer, d.job.id, d.job.to_json(), reason, d.attempts, worker_id],
        )
        return Outcome(int(res))

    # -- fleet -----------------------------------------------------------
    @_translating
    def heartbeat(self, record: WorkerRecord) -> int:
        k = self.keys
        body = json.dumps(record.to_dict(), separators=(",", ":"))
        return int(self._run("heartbeat", [k.workers, k.workers_seen], [record.worker_id, body]))

    @_translating
    def deregister(self, worker_id: str) -> None:
        self.r.hdel(self.keys.workers, worker_id)
        self.r.hdel(self.keys.workers_seen, worker_id)

    @_translating
    def controls(self) -> Controls:
        raw = self.r.hgetall(self.keys.control)
        vals = {_s(a): _s(b) for a, b in raw.items()}
        return Controls(paused=vals.get("paused") == "1", drain=vals.get("drain") == "1")

    @_translating
    def set_control(self, name: str, on: bool) -> None:
        if on:
            self.r.hset(self.keys.control, name, "1")
        else:
            self.r.hdel(self.keys.control, name)

    @_translating
    def publish_event(self, event: dict[str, Any]) -> None:
        # The body (and its eid) is built once: redis-py's own retry of a
        # command whose reply was lost resends these same bytes.
        body = json.dumps(with_event_id(event), separators=(",", ":"), default=str)
        self.r.xadd(self.keys.events, {"event": body}, maxlen=c.DEFAULT_EVENTS_MAXLEN, approximate=True)

    @_translating
    def last_error(self, job_id: str) -> str | None:
        v = self.r.hget(self.keys.errors, job_id)
        return _s(v) if v is not None else None

    @_translating
    def trim(self, lane: str) -> int:
        """Drop acknowledged entries of a lane (never past the oldest pending)."""
        return int(self._run("trim", [self.keys.queue(lane)], [c.GROUP]))

    @_translating
    def stats(self) -> dict[str, int]:
        return {_s(a): int(b) for a, b in self.r.hgetall(self.keys.stats).items()}

    @_translating
    def lanes(self) -> list[str]:
        return sorted(_s(x) for x in self.r.smembers(self.keys.lanes))
