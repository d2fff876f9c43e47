"""Top keywords per cluster by class-based TF-IDF (c-TF-IDF, as in BERTopic).

All texts of a cluster form one document. A word scores high when it is
frequent in its cluster (term frequency normalised by the cluster's length)
and rare across clusters: ``idf = log(1 + A / f)``, where ``A`` is the mean
number of words per cluster and ``f`` the word's count over all clusters.
The unclustered texts take part as one more class, so words common
everywhere sink for every cluster.
"""

from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer

TOKEN_PATTERN = r"(?u)\b[^\W\d_][^\W\d_]+\b"
"""Words of two or more letters (digits and underscores split words)."""


def class_tfidf(docs: dict[int, list[str]], top: int) -> dict[int, list[tuple[str, float]]]:
    """``top`` (word, score) pairs for every class in ``docs``, best first."""
    classes = [c for c in sorted(docs) if docs[c]]
    if not classes:
        return {}
    joined = [" ".join(docs[c]) for c in classes]
    vectorizer = CountVectorizer(stop_words="english", token_pattern=TOKEN_PATTERN, lowercase=True)
    try:
        counts = vectorizer.fit_transform(joined).astype(np.float64)
    except ValueError:  # every text was empty or only stop words
        return {c: [] for c in classes}
    words = vectorizer.get_feature_names_out()
    per_class = np.asarray(counts.sum(axis=1)).ravel()
    per_word = np.asarray(counts.sum(axis=0)).ravel()
    avg = per_class.mean()
    idf = np.log1p(avg / np.maximum(per_word, 1.0))
    tf = counts.multiply(1.0 / np.maximum(per_class, 1.0)[:, None]).tocsr()
    scores = tf.multiply(idf[None, :]).tocsr()
    out: dict[int, list[tuple[str, float]]] = {}
    for i, c in enumerate(classes):
        row = scores.getrow(i)
        order = np.argsort(-row.data, kind="stable")[:top]
        out[c] = [(str(words[row.indices[j]]), round(float(row.data[j]), 6)) for j in order]
    return out
