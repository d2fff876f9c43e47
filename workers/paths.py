# Twin: rust/worker/src/paths.rs (docs/parity.md)
"""Map job paths (relative to the dataset roots) onto this machine's mounts,
refusing any path that escapes its root, symlinks included."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from bus.errors import BadInput, TransientError, UnsafePath
from bus.messages import check_relative

NEVER_OPENS = frozenset({errno.ENAMETOOLONG, errno.ELOOP, errno.ENOTDIR})
"""``errno`` of a path that can never be opened as it is (a name or path too
long for the file system, a symlink loop, a file where a directory should be):
retrying cannot help, the job is dead-lettered. The Rust twin is
``rust/worker/src/paths.rs``."""


def never_opens(e: BaseException) -> bool:
    """Whether ``e`` says its path can never be opened (``NEVER_OPENS``)."""
    return isinstance(e, OSError) and e.errno in NEVER_OPENS


def _stat_error(rel: str, e: OSError) -> Exception:
    if never_opens(e):
        return BadInput(rel, f"the path can never be opened ({e.strerror or e})")
    return TransientError(f"{rel}: cannot stat ({e.strerror or e})")


def fingerprint(path: Path) -> str:
    """``"<size>-<mtime_ns>"`` of a file: what jobs and outputs carry."""
    st = path.stat()
    return f"{st.st_size}-{st.st_mtime_ns}"


def _inside(root: Path, rel: str) -> Path:
    check_relative(rel)
    target = (root / rel).resolve()
    if not target.is_relative_to(root):
        raise UnsafePath(f"{rel}: resolves outside its root (symlink out)")
    return target


@dataclass(frozen=True)
class DataRoots:
    """Where this worker finds inputs and puts outputs (both resolved)."""

    input_root: Path
    output_root: Path

    @classmethod
    def create(cls, input_root: Path | str, output_root: Path | str) -> DataRoots:
        return cls(Path(input_root).resolve(), Path(output_root).resolve())

    def input(self, rel: str) -> Path:
        """The input file of a job; ``BadInput`` if missing, ``UnsafePath`` if it escapes."""
        target = _inside(self.input_root, rel)
        try:
            if not target.is_file():
                raise BadInput(rel, "input file not found" if not target.exists() else "input is not a regular file")
        except OSError as e:
            raise _stat_error(rel, e) from None
        return target

    def output(self, rel: str) -> Path:
        """The output file of a job (may not exist yet); ``UnsafePath`` if it escapes."""
        target = _inside(self.output_root, rel)
        try:
            if target.is_symlink() or (target.exists() and not target.is_file()):
                raise UnsafePath(f"{rel}: output exists and is not a regular file")
        except OSError as e:
            raise _stat_error(rel, e) from None
        return target


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
