"""HDBSCAN over every embedding of a run, with a report people read.

``python -m clusterer`` (``make cluster``) checks that the run is complete,
reduces the embeddings (PCA, then UMAP on a sample), fits HDBSCAN on the
sample, labels every point, and writes ``clusters.parquet``,
``clusters_summary.json``, ``report.md``, ``report.html`` and ``map.png``.
See ``docs/clustering.md``.
"""
