"""Type stub of ``manager._core``, the manager's compiled module (Rust,
PyO3; source ``rust/py`` over ``rust/core``). Use it through
``manager.scan``."""

from collections.abc import Callable, Iterable
from typing import Any, TypedDict

from bus.messages import Job

__version__: str
CACHE_DIR: str
"""Folder of the manager's own files under the output root (``.embedfleet``)."""
CACHE_FILE: str
"""The footer cache in it (``scan-cache.bin``)."""

JobTuple = tuple[int, str, str, str, str, tuple[int, int] | None, int]
"""``(subreddit rank, id, path, out, fingerprint, rows, bytes)``."""
CountTuple = tuple[str, int, int, int, int, int, int, int, int]
"""``(name, files, up_to_date, missing, modified, split_parts, jobs, orphans, errors)``."""

class ScanStats(TypedDict):
    dirs: int
    files: int
    output_footers_read: int
    input_footers_read: int
    cache_hits: int
    cache_load: str
    cache_saved: bool
    cache_error: str | None
    seconds: float

class ScanResult(TypedDict):
    jobs: list[JobTuple]
    subreddits: list[CountTuple]
    orphans: list[str]
    temps: list[str]
    """The workers' hidden temporaries in the output tree (relative paths)."""
    issues: list[tuple[str, str]]
    stats: ScanStats
    cancelled: bool

def job_id(path: str, rows: tuple[int, int] | None, fingerprint: str, model: str) -> str: ...
def scan(
    input_root: str,
    output_root: str,
    model: str,
    *,
    rows_per_part: int,
    subreddits: list[str] | None = None,
    use_cache: bool = True,
    threads: int = 0,
    progress: Callable[[int, int, int], Any] | None = None,
) -> ScanResult:
    """Scan and diff the trees; raises ``FileNotFoundError`` without
    ``<input_root>/chains``."""

def enqueue(
    jobs: Iterable[Job],
    *,
    namespace: str,
    host: str = "127.0.0.1",
    port: int = 6379,
    db: int = 0,
    username: str | None = None,
    password: str | None = None,
    unix_socket: str | None = None,
    redo: bool = False,
    batch: int = 2000,
    timeout_s: float = 10.0,
) -> tuple[int, int]:
    """Pipelined idempotent enqueue; ``(new, existing)``. Raises
    ``ConnectionError`` when Redis cannot be reached."""
