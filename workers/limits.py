# Twin: rust/worker/src/limits.rs (docs/parity.md)
"""Resource ceilings of one worker: a memory ceiling (``--max-memory``) that
the worker stays under by shrinking its chunks and batches, or by refusing a
part that cannot fit, instead of being killed by the operating system; and a
cap on open files (``--max-open-files``)."""

from __future__ import annotations

import re
import resource
from dataclasses import dataclass

import psutil

from bus.errors import TransientError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}

MIN_OPEN_FILES = 64
"""Fewer descriptors than this cannot even hold torch's own files."""


class PartTooLarge(TransientError):
    """This worker's memory ceiling cannot hold the part: another worker with
    more memory may take it, so it is retried rather than dead-lettered."""


def parse_size(text: str) -> int:
    """``"4G"``, ``"512M"``, ``"1.5GiB"``, ``"1000000"`` -> bytes."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"not a size: {text!r} (use e.g. 4G, 512M, 1.5GiB)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def rss_bytes() -> int:
    """Resident memory of this process now."""
    return int(psutil.Process().memory_info().rss)


def cap_open_files(limit: int) -> int:
    """Lower the soft ``RLIMIT_NOFILE`` to ``limit`` (never above the hard one)."""
    if limit < MIN_OPEN_FILES:
        raise ValueError(f"--max-open-files {limit} is below the minimum of {MIN_OPEN_FILES}")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return new


@dataclass
class MemoryBudget:
    """How much more memory the worker may use; unlimited when ``ceiling`` is None."""

    ceiling: int | None = None

    def headroom(self) -> int | None:
        """Bytes left under the ceiling right now (None: no ceiling)."""
        if self.ceiling is None:
            return None
        return max(0, self.ceiling - rss_bytes())

    def fit_rows(self, wanted: int, bytes_per_row: int, minimum: int, share: float = 0.5) -> int:
        """Largest row count up to ``wanted`` whose working set fits in ``share``
        of the headroom; ``minimum`` rows always (a smaller chunk is not worth it)."""
        room = self.headroom()
        if room is None:
            return wanted
        fit = int(room * share) // max(1, bytes_per_row)
        return max(minimum, min(wanted, fit))

    def fit_tokens(self, wanted: int, bytes_per_token: int, minimum: int, share: float = 0.25) -> int:
        """Token budget of one batch that fits in ``share`` of the headroom."""
        return self.fit_rows(wanted, bytes_per_token, minimum, share)

    def require(self, need: int, what: str) -> None:
        """Refuse work whose smallest working set (``need`` bytes) cannot fit."""
        room = self.headroom()
        if room is not None and need > room:
            raise PartTooLarge(f"{what}: needs about {need >> 20} MiB but --max-memory leaves {room >> 20} MiB")
