"""Sample corpus: synthetic Reddit-like chains (``python -m corpus``)."""

from corpus.generate import CorpusSpec, generate_corpus

__all__ = ["CorpusSpec", "generate_corpus"]
