"""Every knob of a clustering run, with its default and the reason for it.

The defaults were chosen by measurement on this project's benchmark
(``bench/bench_cluster.py``, figures in ``BENCHMARKS.md``) and are explained in
``docs/clustering.md``:

- PCA to 50 dimensions first: all-MiniLM-L6-v2 embeddings keep most of their
  neighbourhood structure in 50 principal components, and every later step
  (UMAP's nearest-neighbour graph, the assignment of all points) is several
  times cheaper on 50 than on 384 dimensions.
- UMAP to 5 dimensions, fitted on a sample: HDBSCAN's density estimate needs
  a low-dimensional space (it degrades fast past ~10 dimensions), and UMAP's
  cost grows with the points it is fitted on, not the points it is applied
  to afterwards.
- Points are distinct texts, not rows (``clusterer.distinct``): chains repeat
  every message in every chain below it, and a text repeated a thousand
  times would otherwise be a dense cluster by itself.
- HDBSCAN on a sample of 40,000 points: the cluster tree of a uniform sample
  has the same large clusters as the full tree, and fitting costs
  O(n log n) in the sample alone. Every other point gets the label of its
  nearest sample neighbours in the PCA space (see ``clusterer.assign``).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REDUCERS = ("pca+umap", "pca", "umap")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float32", "float16")

DEFAULT_QUEUE = "embedfleet-cluster"
"""RQ queue a big-memory host serves with ``rq worker embedfleet-cluster``."""

ENV_INPUT_ROOT = "EMBEDFLEET_INPUT_ROOT"
ENV_OUTPUT_ROOT = "EMBEDFLEET_OUTPUT_ROOT"
ENV_DATA_ROOT = "EMBEDFLEET_DATA_ROOT"


@dataclass
class ClusterConfig:
    """Where the data is, how to reduce and cluster it, and what to write."""

    input_root: Path
    output_root: Path
    out_dir: Path | None = None
    text_column: str = "text"
    model: str | None = None
    """Model id whose outputs are clustered; ``None``: the one model found."""
    allow_partial: bool = False
    redis_url: str | None = None
    namespace: str | None = None
    reducer: str = "pca+umap"
    pca_dims: int = 50
    dims: int = 5
    """Dimensions of the space HDBSCAN runs in (UMAP's output)."""
    umap_neighbors: int = 15
    sample_size: int = 40_000
    min_cluster_size: int | None = None
    """Smallest cluster, in distinct texts of the whole run; ``None``: scaled to the run."""
    min_samples: int | None = None
    """HDBSCAN's density smoothing, in sample points; ``None``: the sample's smallest cluster."""
    selection: str = "eom"
    outliers: str = "assign"
    """``assign``: points HDBSCAN leaves as noise join their nearest cluster
    (flagged ``outlier``); ``keep``: they stay unclustered (-1)."""
    assign_neighbors: int = 10
    seed: int = 0
    device: str = "auto"
    dtype: str = "float32"
    top_words: int = 10
    representatives: int = 5
    map_points: int = 15_000
    index: bool = True
    """Build the neighbour index of every distinct text (``clusterer.ann``)."""
    renumber: bool = False
    """Number clusters from the largest down, ignoring the ids of the previous run in ``out``."""
    update: bool = False
    """Label the texts new since the last clustering in ``out`` without refitting (``clusterer.update``)."""
    refit: bool = False
    """With ``update``: refit anyway."""
    refit_threshold: float = 0.2
    """With ``update``: refit when more than this share of the new texts fell outside every cluster."""
    """Number clusters from the largest down, ignoring the ids of the previous run in ``out``."""
    subreddits_list: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def out(self) -> Path:
        """Directory the results are written to."""
        return self.out_dir if self.out_dir is not None else self.output_root / "clusters"

    def validate(self) -> None:
        """Refuse settings that cannot work, with a message saying why."""
        if self.reducer not in REDUCERS:
            raise ValueError(f"--reducer must be one of {', '.join(REDUCERS)}, not {self.reducer!r}")
        if self.device not in DEVICES:
            raise ValueError(f"--device must be one of {', '.join(DEVICES)}, not {self.device!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")
        if self.outliers not in ("assign", "keep"):
            raise ValueError(f"--outliers must be assign or keep, not {self.outliers!r}")
        if self.selection not in ("eom", "leaf"):
            raise ValueError(f"--selection must be eom or leaf, not {self.selection!r}")
        for name in ("pca_dims", "dims", "sample_size", "umap_neighbors", "assign_neighbors"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
        if self.min_cluster_size is not None and self.min_cluster_size < 2:
            raise ValueError("--min-cluster-size must be at least 2")
        if not 0.0 <= self.refit_threshold <= 1.0:
            raise ValueError("--refit-threshold is a share of the new texts, between 0 and 1")
        if self.min_samples is not None and self.min_samples < 1:
            raise ValueError("--min-samples must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (paths as strings), e.g. for an RQ job or the summary."""
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, Path):
                d[k] = str(v)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClusterConfig:
        paths = {"input_root", "output_root", "out_dir", "subreddits_list"}
        kw: dict[str, Any] = {k: (Path(v) if k in paths and v is not None else v) for k, v in d.items()}
        return cls(**kw)


def roots_from_env() -> tuple[str | None, str | None]:
    """Input and output roots from the environment (data root for both)."""
    data = os.environ.get(ENV_DATA_ROOT)
    return os.environ.get(ENV_INPUT_ROOT) or data, os.environ.get(ENV_OUTPUT_ROOT) or data
