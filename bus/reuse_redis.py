# Twin: rust/worker/src/reuse/redis_store.rs (docs/parity.md)
"""``ReuseStore`` over Redis: the bus's own server (keys under the namespace,
within the store's byte ceiling) or a dedicated one (``--reuse-url``).

Look-ups are one ``MGET``; claims and writes are the ``reuse_claim`` and
``reuse_put`` scripts (``bus/lua/``), atomic per call. Faults surface as
``BusUnavailable``, which workers treat as "no store": they compute.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis

from bus import constants as c
from bus.errors import BusUnavailable
from bus.keys import Keys
from bus.redis_transport import script_source
from bus.reuse import Claimed

T = TypeVar("T")


def _faults_are_unavailable(fn: Callable[..., T]) -> Callable[..., T]:
    """Every Redis error of the store, a script error or an out-of-memory
    refusal included, means "no store here": the caller computes."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except redis.exceptions.RedisError as e:
            raise BusUnavailable(f"reuse store: {type(e).__name__}") from None

    return wrapper


class RedisReuseStore:
    """``ReuseStore`` backed by one Redis database."""

    def __init__(
        self,
        client: redis.Redis,
        namespace: str = c.DEFAULT_NAMESPACE,
        claim_ms: int = c.DEFAULT_REUSE_CLAIM_MS,
        default_max_bytes: int = c.DEFAULT_REUSE_MAX_BYTES,
    ) -> None:
        self.r = client
        self.keys = Keys(namespace)
        self.claim_ms = claim_ms
        self.default_max_bytes = default_max_bytes
        self._claim = client.register_script(script_source("reuse_claim"))
        self._put = client.register_script(script_source("reuse_put"))

    @_faults_are_unavailable
    def lookup(self, keys: Sequence[bytes], classes: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        per_class = [self.keys.reuse_entries(cls, keys) for cls in classes]
        values: list[bytes | None] = self.r.mget(_interleave(per_class))  # type: ignore[assignment]
        n = len(classes)
        if n == 1:
            return values
        return [next((v for v in values[i * n : (i + 1) * n] if v is not None), None) for i in range(len(keys))]

    @_faults_are_unavailable
    def claim(self, keys: Sequence[bytes], classes: Sequence[str], owner: str) -> list[Claimed]:
        if not keys:
            return []
        names = _interleave(
            [self.keys.reuse_entries(cls, keys) for cls in classes]
            + [self.keys.reuse_claims(cls, keys) for cls in classes]
        )
        answers = self._claim(keys=names, args=[owner, self.claim_ms, len(classes)])
        return [Claimed(value=a) if isinstance(a, bytes) else Claimed(mine=a == 1) for a in answers]

    @_faults_are_unavailable
    def put(self, cls: str, keys: Sequence[bytes], values: Sequence[bytes], owner: str) -> int:
        if not keys:
            return 0
        names: list[str | bytes] = [self.keys.reuse_bytes, self.keys.reuse_max]
        names += _interleave([self.keys.reuse_entries(cls, keys), self.keys.reuse_claims(cls, keys)])
        args: list[bytes | str | int] = [owner, self.default_max_bytes, c.REUSE_ENTRY_OVERHEAD, *values]
        return int(self._put(keys=names, args=args))

    @_faults_are_unavailable
    def set_ceiling(self, max_bytes: int) -> None:
        """Set the store's byte ceiling for the whole fleet (0: none of ours)."""
        self.r.set(self.keys.reuse_max, max_bytes)

    @_faults_are_unavailable
    def used_bytes(self) -> int:
        """Bytes accounted to the store's entries."""
        return int(self.r.get(self.keys.reuse_bytes) or 0)


def _interleave(columns: list[list[bytes]]) -> list[bytes]:
    """Row by row: ``columns[0][i], columns[1][i], …`` for every ``i``."""
    if len(columns) == 1:
        return columns[0]
    return [name for row in zip(*columns, strict=True) for name in row]
