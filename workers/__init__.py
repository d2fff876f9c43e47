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

try:
    __version__ = metadata.version("embedfleet")
except metadata.PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.1.0+checkout"

KIND = "python"
"""``worker_kind`` this worker reports in events, records and output metadata."""
