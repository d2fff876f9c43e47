"""Shared test support: oracles, helpers and fixtures that several test
modules (and the benchmarks) use. Test modules import from here, never from
one another; ``bench/`` imports from here and from nowhere else in ``tests/``.

- ``procs``: processes a test starts (and kills), free ports, polling.
- ``redis_server``: private redis-servers, plain or fleet-like (AOF).
- ``fakes``: fake workers that speak the real bus and embed nothing.
- ``pyscan``: the pure-Python scanner, the Rust scan's oracle and baseline.
- ``scan_tree``: input/output trees for the scan and enqueue tests.
- ``rust_worker``: running the release Rust worker and reading what it left.
- ``api``: a populated bus for the status API tests.
- ``vectors``: the shared JSON vectors.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository root."""
