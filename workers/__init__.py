"""The Python worker: claims embedding jobs from the bus, reads each job's
rows with polars, embeds them with sentence-transformers on the best device
of its machine (MPS, CUDA or CPU) and writes the output atomically.

Modules: ``runtime`` (the generic bus loop: leases, retries, controls,
signals, watchdog), ``pipeline`` (one job: read, clean, deduplicate, embed,
write), ``reader``/``cleaning``/``writer``/``paths`` (data handling),
``embedder``/``st_embedder``/``device`` (the model), ``limits`` (memory and
open-file ceilings). ``python -m workers.mps`` is the command line.
"""

from __future__ import annotations

from importlib import metadata

DISTRIBUTIONS = ("embedfleet", "embedfleet-python-worker")
"""The full package (maturin, with the manager) and the lean worker-only one
(deploy/pyworker): either one installs this module."""


def _version() -> str:
    for dist in DISTRIBUTIONS:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "0.1.0+checkout"  # running from a checkout that was never installed


__version__ = _version()

KIND = "python"
"""``worker_kind`` this worker reports in events, records and output metadata."""
