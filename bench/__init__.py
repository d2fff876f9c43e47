"""Benchmarks: each ``bench/bench_<area>.py`` measures one claim against a
baseline taken in the same run; ``python -m bench`` runs them all and writes
BENCHMARKS.md. Not part of ``make test``; ``--smoke`` runs them small (CI)."""
