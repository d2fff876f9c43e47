"""HDBSCAN over every embedding of a run, with a report people read.

``python -m clusterer`` (``make cluster``) checks that the run is complete,
groups rows by their text (read from the inputs and keyed as the workers key
it), reduces one embedding per distinct text (PCA, then UMAP on a sample),
fits HDBSCAN on the sample, labels every text and through it every row
(keeping the previous run's cluster ids where clusters match), merges the
clusters into a topic tree, and writes ``clusters.parquet``,
``clusters_summary.json``, ``report.md``, an interactive self-contained
``report.html``, ``map.png``, the state ``--update`` needs and a neighbour
index for ``python -m clusterer neighbours``. See ``docs/clustering.md``.
"""
