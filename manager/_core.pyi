"""Type stub of ``manager._core``, the manager's compiled module (Rust,
PyO3; source ``rust/py`` over ``rust/core``). Use it through
``manager.scan``. ``tests/test_core_stub.py`` checks it against the built
module with ``mypy.stubtest``."""

from collections.abc import Callable, Iterable
from typing import Any, TypedDict, final

from bus.messages import Job

__all__ = ["CACHE_DIR", "CACHE_FILE", "PlannedJob", "SubredditScan", "__version__", "enqueue", "job_id", "scan"]

__version__: str
CACHE_DIR: str
"""Folder of the manager's own files under the output root (``.embedfleet``)."""
CACHE_FILE: str
"""The footer cache in it (``scan-cache.bin``)."""

@final
class PlannedJob:
    """One job the scan found missing (frozen, compared by value)."""

    def __new__(
        cls, rank: int, id: str, path: str, out: str, fingerprint: str, rows: tuple[int, int] | None, bytes: int
    ) -> PlannedJob: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    @property
    def rank(self) -> int:
        """Index of the job's subreddit in the scan's ``subreddits``."""
    @property
    def id(self) -> str:
        """The protocol's job id."""
    @property
    def path(self) -> str:
        """Input path, relative to the input root."""
    @property
    def out(self) -> str:
        """Output path, relative to the output root."""
    @property
    def fingerprint(self) -> str:
        """The input's fingerprint, ``"{size}-{mtime_ns}"``."""
    @property
    def rows(self) -> tuple[int, int] | None:
        """The row range of a split input; ``None`` for the whole file."""
    @property
    def bytes(self) -> int:
        """Compressed bytes of the job's row groups."""

@final
class SubredditScan:
    """What the diff found for one subreddit over all suffixes (frozen,
    compared by value). ``files`` are inputs; ``split_parts`` and ``jobs``
    count planned jobs."""

    def __new__(
        cls,
        name: str,
        files: int,
        up_to_date: int,
        missing: int,
        modified: int,
        split_parts: int,
        jobs: int,
        orphans: int,
        errors: int,
    ) -> SubredditScan: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def files(self) -> int: ...
    @property
    def up_to_date(self) -> int: ...
    @property
    def missing(self) -> int: ...
    @property
    def modified(self) -> int: ...
    @property
    def split_parts(self) -> int: ...
    @property
    def jobs(self) -> int: ...
    @property
    def orphans(self) -> int: ...
    @property
    def errors(self) -> int: ...

class _ScanStats(TypedDict):
    dirs: int
    files: int
    output_footers_read: int
    input_footers_read: int
    cache_hits: int
    cache_load: str
    cache_saved: bool
    cache_error: str | None
    seconds: float

class _ScanResult(TypedDict):
    """What ``scan`` returns (a dict; the name exists in this stub only)."""

    jobs: list[PlannedJob]
    subreddits: list[SubredditScan]
    """By rank: the checkpoint's order, else sorted by name."""
    orphans: list[str]
    temps: list[str]
    """The workers' hidden temporaries in the output tree (relative paths)."""
    issues: list[tuple[str, str]]
    stats: _ScanStats
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
) -> _ScanResult:
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
