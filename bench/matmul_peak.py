"""The machine's measured fp32 matrix-multiply peak, and the model FLOP/s an
embedder reaches, so a benchmark can report the share of the peak it uses.

Peak: the median GFLOP/s of repeated square fp32 GEMMs (``n x n @ n x n``,
``2 n^3`` FLOPs each) with numpy (its BLAS) and with torch where installed,
both pinned to the same thread count as the embedder under test; the
machine's peak is the better of the two medians.

Model FLOPs of all-MiniLM-L6-v2 (6 layers, hidden d = 384, FFN 1536) for one
text of ``n`` tokens (special tokens included, truncated at 256)::

    F(n) = 2 * P * n  +  4 * layers * d * n^2
    P    = layers * 12 * d^2 = 10,616,832   (Q, K, V, O: 4 d^2; FFN: 8 d^2)

The first term is every weight matrix applied to every token (a multiply and
an add per weight); the second is attention, ``Q K^T`` and ``softmax(.) V``,
``2 n^2 d`` each per layer. The model's other 11.9M parameters are the token
and position embedding tables: lookups, not multiplies, so they are left out
(counting "22M params" would double the figure). Biases, layer norms, GELU,
softmax and pooling are O(n d) and left out too. Padding is not counted:
these are the FLOPs the texts need, not what a batching scheme spends, so
an embedder that wastes work on padding shows a lower share. Over many
texts, ``sum F(n) = 2 P * sum(n) + 4 layers d * sum(n^2)``, which is why
``achieved_gflops`` takes the mean of squared token counts where known.

The shares are against the fp32 GEMM peak for every precision (an int8 or
bf16 model can in principle pass 100%): the question they answer is how much
of what this CPU does for fp32 matmuls the embedder turns into model work.

``python -m bench.matmul_peak --threads 2`` prints the peak.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

LAYERS = 6
HIDDEN = 384
LINEAR_PARAMS = LAYERS * 12 * HIDDEN * HIDDEN
"""Weights of all-MiniLM-L6-v2's matrix multiplies (10,616,832)."""
ATTENTION_COEFF = 4 * LAYERS * HIDDEN
"""FLOPs of attention per squared token, over all layers (9,216)."""
MIN_SAMPLE_S = 0.05
"""A sample repeats the GEMM until it has run at least this long (small n)."""


@dataclass(frozen=True)
class GemmPeak:
    """Repeated GFLOP/s samples of one backend's fp32 GEMM."""

    backend: str
    threads: int
    n: int
    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


# -- the peak -------------------------------------------------------------------------
@contextmanager
def _numpy_threads(threads: int) -> Iterator[bool]:
    """Limit numpy's BLAS to ``threads``; yields whether that was possible."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield False
        return
    with threadpool_limits(limits=threads, user_api="blas"):
        yield True


def _sample(run: Callable[[], object], flops: float) -> float:
    """GFLOP/s of ``run`` repeated until ``MIN_SAMPLE_S`` has passed."""
    calls = 0
    t0 = time.perf_counter()
    while True:
        run()
        calls += 1
        took = time.perf_counter() - t0
        if took >= MIN_SAMPLE_S:
            return flops * calls / took / 1e9


def measure_numpy(threads: int, n: int = 1024, repeats: int = 7) -> GemmPeak:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    with _numpy_threads(threads) as pinned:
        np.matmul(a, b, out=out)  # warm-up: BLAS thread pool, page faults
        samples = [_sample(lambda: np.matmul(a, b, out=out), 2.0 * n**3) for _ in range(repeats)]
    return GemmPeak("numpy" if pinned else "numpy (threads not pinned)", threads, n, samples)


def measure_torch(threads: int, n: int = 1024, repeats: int = 7) -> GemmPeak | None:
    """Torch's CPU GEMM, or ``None`` where torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(n, n, generator=gen, dtype=torch.float32)
        b = torch.randn(n, n, generator=gen, dtype=torch.float32)
        out = torch.empty(n, n, dtype=torch.float32)
        with torch.inference_mode():
            torch.mm(a, b, out=out)
            samples = [_sample(lambda: torch.mm(a, b, out=out), 2.0 * n**3) for _ in range(repeats)]
    finally:
        torch.set_num_threads(before)
    return GemmPeak("torch", threads, n, samples)


def measure_peak(threads: int, n: int = 1024, repeats: int = 7) -> list[GemmPeak]:
    """Every available backend's GEMM at ``threads`` threads."""
    found = [measure_numpy(threads, n, repeats), measure_torch(threads, n, repeats)]
    return [p for p in found if p is not None]


def pooled(peaks: Sequence[GemmPeak]) -> list[GemmPeak]:
    """Samples of the same backend taken at different times, as one
    measurement each (spread over a benchmark, they see the load it saw)."""
    by: dict[tuple[str, int, int], list[float]] = {}
    for p in peaks:
        by.setdefault((p.backend, p.threads, p.n), []).extend(p.samples)
    return [GemmPeak(backend, threads, n, samples) for (backend, threads, n), samples in by.items()]


def best(peaks: Sequence[GemmPeak]) -> GemmPeak:
    """The backend with the higher median: the machine's measured peak."""
    return max(peaks, key=lambda p: p.median)


# -- model FLOPs ----------------------------------------------------------------------
def token_moments(token_counts: Sequence[int]) -> tuple[float, float]:
    """Mean and mean square of per-text token counts."""
    counts = np.asarray(token_counts, dtype=np.float64)
    if counts.size == 0:
        return 0.0, 0.0
    return float(counts.mean()), float((counts**2).mean())


def text_flops(tokens: float, tokens_sq: float | None = None) -> float:
    """Model FLOPs of one text of ``tokens`` tokens (see the module docstring).
    ``tokens_sq``: the mean squared count when ``tokens`` is a mean
    (``tokens**2`` otherwise, which undercounts attention for mixed lengths)."""
    sq = tokens * tokens if tokens_sq is None else tokens_sq
    return 2.0 * LINEAR_PARAMS * tokens + ATTENTION_COEFF * sq


def achieved_gflops(texts_per_s: float, mean_tokens: float, mean_sq_tokens: float | None = None) -> float:
    """Model GFLOP/s an embedder reaches at ``texts_per_s`` on texts of
    ``mean_tokens`` tokens on average (``mean_sq_tokens``: mean of squares)."""
    return texts_per_s * text_flops(mean_tokens, mean_sq_tokens) / 1e9


def peak_share(
    texts_per_s: float, mean_tokens: float, peak_gflops: float, mean_sq_tokens: float | None = None
) -> float:
    """Achieved model FLOP/s as a fraction of the measured GEMM peak."""
    return achieved_gflops(texts_per_s, mean_tokens, mean_sq_tokens) / peak_gflops


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.matmul_peak", description="fp32 GEMM GFLOP/s on this machine")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--n", type=int, default=1024, help="matrix size")
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args(argv)
    for peak in measure_peak(a.threads, a.n, a.repeats):
        lo, hi = min(peak.samples), max(peak.samples)
        print(f"{peak.backend}: {peak.median:.1f} ({lo:.1f}-{hi:.1f}) GFLOP/s, n={peak.n}, {peak.threads} thread(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
