"""The embedfleet manager: scans the chains, enqueues the missing jobs,
coordinates the run, journals events and serves status. Its compiled core is
``manager._core`` (Rust, PyO3)."""

from manager import _core

__all__ = ["_core"]
