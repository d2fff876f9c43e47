"""Lane routing: which lane (stream) each job goes to.

Rules, checked in this order:

1. subreddit patterns (``--route 'pattern=lane'``, shell globs matched
   case-insensitively against the subreddit name), the first match wins;
2. size thresholds (``--route-size 'BYTES=lane'``, ``K``/``M``/``G``
   suffixes allowed): a job of at least BYTES input bytes goes to the lane
   of the largest threshold it reaches. A job's bytes are the input file's
   size, or for a row-range part the compressed bytes of its row groups;
3. otherwise ``default``.

Workers pick lanes with ``--lanes`` (in priority order), so e.g. big jobs can
go to a ``gpu`` lane that only CUDA boxes read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from bus.constants import DEFAULT_LANE

LANE_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
"""Lane names become key suffixes (``<ns>:q:<lane>``): no ``:`` or spaces."""

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE_RE = re.compile(r"\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*", re.IGNORECASE)


def check_lane(lane: str) -> str:
    """A valid lane name, or ``ValueError``."""
    if not LANE_RE.fullmatch(lane):
        raise ValueError(f"bad lane name {lane!r}: use letters, digits, '_', '.', '-' (at most 64)")
    return lane


def parse_size(text: str) -> int:
    """``"1048576"``, ``"100M"``, ``"2GiB"`` -> bytes."""
    m = _SIZE_RE.fullmatch(text)
    if not m:
        raise ValueError(f"bad size {text!r}: use a number of bytes, optionally with K, M, G or T")
    return int(m[1]) * _UNITS[m[2].upper()]


def _split_rule(rule: str, what: str) -> tuple[str, str]:
    key, sep, lane = rule.rpartition("=")
    if not sep or not key.strip():
        raise ValueError(f"bad {what} rule {rule!r}: expected '<{what}>=<lane>'")
    return key.strip(), check_lane(lane.strip())


@dataclass(frozen=True)
class Routes:
    """Lane rules; ``Routes()`` sends everything to ``default``."""

    patterns: tuple[tuple[str, str], ...] = ()
    """``(glob, lane)`` in the order given."""
    sizes: tuple[tuple[int, str], ...] = ()
    """``(min bytes, lane)``, largest threshold first."""
    default: str = DEFAULT_LANE
    _memo: dict[str, str | None] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def parse(cls, patterns: list[str] | None = None, sizes: list[str] | None = None) -> Routes:
        """Build from CLI rules (``'pattern=lane'`` and ``'BYTES=lane'``)."""
        pats = tuple((p.lower(), lane) for p, lane in (_split_rule(r, "pattern") for r in patterns or []))
        by_size = [(parse_size(s), lane) for s, lane in (_split_rule(r, "size") for r in sizes or [])]
        return cls(patterns=pats, sizes=tuple(sorted(by_size, key=lambda t: -t[0])))

    def _by_subreddit(self, subreddit: str) -> str | None:
        if subreddit not in self._memo:
            name = subreddit.lower()
            self._memo[subreddit] = next((lane for p, lane in self.patterns if fnmatchcase(name, p)), None)
        return self._memo[subreddit]

    def lane(self, subreddit: str, size: int) -> str:
        """The lane of a job of ``size`` input bytes from ``subreddit``."""
        by_name = self._by_subreddit(subreddit) if self.patterns else None
        if by_name is not None:
            return by_name
        for threshold, lane in self.sizes:
            if size >= threshold:
                return lane
        return self.default

    def lanes(self) -> list[str]:
        """Every lane these rules can send a job to."""
        found = [self.default, *(lane for _, lane in self.patterns), *(lane for _, lane in self.sizes)]
        return list(dict.fromkeys(found))
