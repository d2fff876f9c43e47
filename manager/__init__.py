"""The embedfleet manager: scans the chains, enqueues the missing jobs,
coordinates the run, journals events and serves status. Its compiled core is
``manager._core`` (Rust, PyO3)."""

from importlib import metadata

from manager import _core

try:
    __version__ = metadata.version("embedfleet")
except metadata.PackageNotFoundError:  # a checkout that was never installed
    __version__ = "0.1.0+checkout"

__all__ = ["__version__", "_core"]
