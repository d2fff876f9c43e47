"""Sample corpus: synthetic Reddit-like chains (``python -m corpus``)."""

from corpus.generate import CorpusSpec, generate_corpus
from corpus.stats import CorpusStats, measure_corpus
from corpus.thread_corpus import ThreadCorpusSpec, generate_thread_corpus
from corpus.threads import ThreadShape

__all__ = [
    "CorpusSpec",
    "CorpusStats",
    "ThreadCorpusSpec",
    "ThreadShape",
    "generate_corpus",
    "generate_thread_corpus",
    "measure_corpus",
]
