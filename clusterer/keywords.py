"""Keywords of every class (cluster, topic, the unclustered) that always say something.

Words come first, by class-based TF-IDF (c-TF-IDF, as in BERTopic). All texts
of a class form one document. A word scores high when it is frequent in its
class (term frequency normalised by the class's length) and rare across
classes: ``idf = log(1 + A / f)``, where ``A`` is the mean number of words per
class and ``f`` the word's count over all classes. Tokens come from
``clusterer.tokens`` (any script, stop words out, at most 40 characters).

A class whose texts hold no word at all (only short replies such as "This."
or "Same here", only punctuation) is named by its most frequent distinct
texts instead, shortened to ``MAX_TOKEN_CHARS``; its ``source`` says so. A
class whose texts could not be read says that. No class has an empty list.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import regex
from sklearn.feature_extraction.text import CountVectorizer

from clusterer.tokens import MAX_DOC_CHARS, MAX_TOKEN_CHARS, tokens

FALLBACK_TEXTS = 5
"""Frequent texts that name a class with no words."""

UNAVAILABLE = "(texts unavailable)"
EMPTY = "(empty text)"
_PUNCTUATION = regex.compile(r"[\p{P}\p{S}\s]+")


@dataclass(frozen=True)
class Keywords:
    """What names a class: ``(keyword, score)`` pairs, best first, and where they come from:
    ``words`` (c-TF-IDF), ``texts`` (its most frequent texts; score: share of rows), or
    ``none`` (no text of the class could be read)."""

    words: list[tuple[str, float]]
    source: str

    @property
    def first(self) -> str:
        return self.words[0][0]


def shorten(text: str, limit: int = MAX_TOKEN_CHARS) -> str:
    """One line of at most ``limit`` characters (an ellipsis marks a cut)."""
    flat = " ".join(text.split())
    if not flat:
        return EMPTY
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def class_tfidf(docs: dict[int, list[str]], top: int) -> dict[int, list[tuple[str, float]]]:
    """``top`` (word, score) pairs for every class in ``docs``, best first (empty when it has no word)."""
    classes = [c for c in sorted(docs) if docs[c]]
    if not classes:
        return {}
    joined = ["\n".join(t[:MAX_DOC_CHARS] for t in docs[c]) for c in classes]
    vectorizer = CountVectorizer(analyzer=tokens)
    try:
        counts = vectorizer.fit_transform(joined).astype(np.float64)
    except ValueError:  # no class has a single word
        return {c: [] for c in classes}
    words = vectorizer.get_feature_names_out()
    per_class = np.asarray(counts.sum(axis=1)).ravel()
    per_word = np.asarray(counts.sum(axis=0)).ravel()
    idf = np.log1p(per_class.mean() / np.maximum(per_word, 1.0))
    tf = counts.multiply(1.0 / np.maximum(per_class, 1.0)[:, None]).tocsr()
    scores = tf.multiply(idf[None, :]).tocsr()
    out: dict[int, list[tuple[str, float]]] = {}
    for i, c in enumerate(classes):
        row = scores.getrow(i)
        order = np.argsort(-row.data, kind="stable")[:top]
        out[c] = [(str(words[row.indices[j]]), round(float(row.data[j]), 6)) for j in order]
    return out


def _gist(text: str) -> str:
    """What a short reply says, whatever its case, spacing and punctuation ("This!!" is "this")."""
    flat = _PUNCTUATION.sub(" ", text[:MAX_DOC_CHARS].lower()).strip()
    return " ".join(flat.split()) or " ".join(text.split())[:MAX_DOC_CHARS]


def frequent_texts(texts: list[tuple[str, int]], top: int = FALLBACK_TEXTS) -> list[tuple[str, float]]:
    """The most frequent texts, with their share of the rows: variants that differ only in case,
    spacing and punctuation count as one, shown in their most frequent (then shortest) form, shortened."""
    counts: Counter[str] = Counter()
    forms: dict[str, Counter[str]] = {}
    for text, rows in texts:
        gist = _gist(text)
        counts[gist] += rows
        forms.setdefault(gist, Counter())[text[:MAX_DOC_CHARS]] += rows
    total = max(sum(counts.values()), 1)
    out = []
    for gist, n in counts.most_common(top):
        form = min(forms[gist].items(), key=lambda kv: (-kv[1], len(kv[0]), kv[0]))[0]
        out.append((shorten(form), round(n / total, 6)))
    return out


def describe(docs: dict[int, list[tuple[str, int]]], classes: list[int], top: int) -> dict[int, Keywords]:
    """Keywords of every class in ``classes``; ``docs`` maps a class to its (distinct text, rows) pairs."""
    words = class_tfidf({c: [t for t, _ in docs.get(c, [])] for c in classes}, top)
    out: dict[int, Keywords] = {}
    for c in classes:
        if words.get(c):
            out[c] = Keywords(words[c], "words")
        elif docs.get(c):
            out[c] = Keywords(frequent_texts(docs[c], min(top, FALLBACK_TEXTS)), "texts")
        else:
            out[c] = Keywords([(UNAVAILABLE, 0.0)], "none")
    return out
