# Twin: rust/core/src/keys.rs (docs/parity.md)
"""Redis key names for one namespace. The layout is documented in
``bus/constants.py`` and ``docs/protocol.md``."""

from __future__ import annotations

from binascii import hexlify
from collections.abc import Sequence
from dataclasses import dataclass

from bus import constants as c


@dataclass(frozen=True)
class Keys:
    """Builds every key of one fleet from its namespace."""

    namespace: str = c.DEFAULT_NAMESPACE

    def _k(self, suffix: str) -> str:
        return f"{self.namespace}:{suffix}"

    def queue(self, lane: str) -> str:
        return self._k(c.KEY_QUEUE.format(lane=lane))

    def delayed(self, lane: str) -> str:
        return self._k(c.KEY_DELAYED.format(lane=lane))

    @property
    def state(self) -> str:
        return self._k(c.KEY_STATE)

    @property
    def stats(self) -> str:
        return self._k(c.KEY_STATS)

    @property
    def dead(self) -> str:
        return self._k(c.KEY_DEAD)

    @property
    def errors(self) -> str:
        return self._k(c.KEY_ERRORS)

    @property
    def workers(self) -> str:
        return self._k(c.KEY_WORKERS)

    @property
    def workers_seen(self) -> str:
        return self._k(c.KEY_WORKERS_SEEN)

    @property
    def control(self) -> str:
        return self._k(c.KEY_CONTROL)

    @property
    def events(self) -> str:
        return self._k(c.KEY_EVENTS)

    @property
    def lanes(self) -> str:
        return self._k(c.KEY_LANES)

    @property
    def lock_reconcile(self) -> str:
        """The manager's reconcile lock."""
        return self._k(c.KEY_LOCK_RECONCILE)

    def reuse_entry(self, cls: str, key: bytes) -> str:
        """Vector of one distinct text in one precision class."""
        return self._k(c.KEY_REUSE_ENTRY.format(cls=cls, key=key.hex()))

    def reuse_claim(self, cls: str, key: bytes) -> str:
        """Claim of the worker computing that text in that class now."""
        return self._k(c.KEY_REUSE_CLAIM.format(cls=cls, key=key.hex()))

    def reuse_entries(self, cls: str, keys: Sequence[bytes]) -> list[bytes]:
        """``reuse_entry`` of many keys at once, as bytes (the reuse store's hot
        path: one prefix, then a C-level hex per key)."""
        return _many(self._k(c.KEY_REUSE_ENTRY.format(cls=cls, key="")), keys)

    def reuse_claims(self, cls: str, keys: Sequence[bytes]) -> list[bytes]:
        """``reuse_claim`` of many keys at once, as bytes."""
        return _many(self._k(c.KEY_REUSE_CLAIM.format(cls=cls, key="")), keys)

    @property
    def reuse_bytes(self) -> str:
        return self._k(c.KEY_REUSE_BYTES)

    @property
    def reuse_max(self) -> str:
        return self._k(c.KEY_REUSE_MAX)


def _many(prefix: str, keys: Sequence[bytes]) -> list[bytes]:
    """``prefix`` + the lowercase hex of each key (key names ending in ``{key}``)."""
    head = prefix.encode("utf-8")
    return [head + hexlify(k) for k in keys]
