"""The clusterer's building blocks: PCA, the IVF neighbour index, the vote,
c-TF-IDF, the sampling rules and the report's escaping."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from clusterer.assign import IvfIndex, label_all, vote
from clusterer.backend import gpu_available, select_backend
from clusterer.config import ClusterConfig
from clusterer.fit import relabel_by_size, sample_parameters
from clusterer.keywords import class_tfidf
from clusterer.pipeline import choose_sample
from clusterer.profiles import keyword_sample, representative_candidates
from clusterer.progress import Progress
from clusterer.reduce import fit_pca
from clusterer.report import snippet


def exact_knn(q: np.ndarray, base: np.ndarray, k: int) -> np.ndarray:
    d = ((q[:, None, :] - base[None, :, :]) ** 2).sum(-1)
    return np.argsort(d, axis=1)[:, :k]


def test_pca_matches_the_leading_variance_directions() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 20)) * np.r_[10.0, 7.0, 5.0, np.ones(17)]
    pca = fit_pca(x.astype(np.float32), 3)
    assert pca.dims == 3 and pca.kept_variance > 0.8
    assert np.allclose(np.abs(pca.components[:3, :3]), np.eye(3), atol=0.05)
    again = fit_pca(x.astype(np.float32), 3)
    assert np.array_equal(pca.components, again.components), "signs are fixed, so runs agree"


def test_ivf_index_finds_most_true_neighbours() -> None:
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((20, 16)) * 4
    base = (centres[rng.integers(0, 20, 6000)] + rng.standard_normal((6000, 16))).astype(np.float32)
    q = (centres[rng.integers(0, 20, 300)] + rng.standard_normal((300, 16))).astype(np.float32)
    idx, dist = IvfIndex(base, seed=0).query(q, 10)
    truth = exact_knn(q, base, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(idx, truth, strict=True)])
    assert recall >= 0.8
    assert np.all(np.diff(dist, axis=1) >= 0), "nearest first"
    assert np.allclose(dist[:, 0], np.linalg.norm(q - base[idx[:, 0]], axis=1), rtol=1e-3, atol=1e-3)


def test_ivf_index_is_exact_with_one_cell() -> None:
    rng = np.random.default_rng(2)
    base = rng.standard_normal((500, 8)).astype(np.float32)
    q = rng.standard_normal((50, 8)).astype(np.float32)
    idx, _ = IvfIndex(base, cells=1).query(q, 5)
    assert np.array_equal(idx, exact_knn(q, base, 5))


def test_vote_takes_the_weighted_majority_and_noise_has_no_probability() -> None:
    labels = np.array([[1, 1, 2, 2, 2], [-1, -1, -1, 3, 3], [4, 5, 5, 4, 4]])
    probs = np.ones((3, 5), dtype=np.float32)
    dist = np.array([[0.1, 0.1, 1.0, 1.0, 1.0], [0.5] * 5, [0.2, 0.3, 0.3, 0.4, 0.4]], dtype=np.float32)
    lab, prob = vote(labels, probs, dist)
    assert lab.tolist() == [1, -1, 4]
    assert prob[1] == 0.0 and 0.5 < prob[0] < 1.0


def test_label_all_assigns_outliers_to_the_nearest_cluster_or_keeps_them() -> None:
    rng = np.random.default_rng(4)
    blobs = np.concatenate([rng.normal(0, 0.1, (100, 2)), rng.normal(5, 0.1, (100, 2))])
    stray = np.array([[0.5, 0.5], [4.2, 4.4], [2.4, 2.6]])
    points = np.concatenate([blobs, stray]).astype(np.float32)
    sample = np.r_[np.arange(0, 200, 2), 200]
    sample_labels = np.r_[np.zeros(50), np.ones(50), -1].astype(np.int32)
    sample_probs = np.r_[np.ones(100), 0.0].astype(np.float32)
    cpu = select_backend("cpu")
    quiet = Progress(quiet=True)
    labels, _, outlier = label_all(cpu, points, sample, sample_labels, sample_probs, 5, False, 0, quiet)
    assert labels[1] == 0 and labels[101] == 1, "points between sample points take their label"
    assert labels[200] == -1 and outlier[200]
    labels, probs, outlier2 = label_all(cpu, points, sample, sample_labels, sample_probs, 5, True, 0, quiet)
    assert np.array_equal(outlier, outlier2)
    assert labels[200] == 0 and labels[201] == 1 and (labels >= 0).all()
    assert probs[1] > 0.9


def test_class_tfidf_prefers_words_distinctive_of_a_cluster() -> None:
    docs = {
        0: ["rocket launch orbit", "rocket engine orbit today", "the orbit of mars today"],
        1: ["guitar chord album today", "album release today", "guitar solo"],
        -1: ["today is a day", "what a day today"],
    }
    kw = class_tfidf(docs, 3)
    assert [w for w, _ in kw[0]][:2] == ["orbit", "rocket"]
    assert {w for w, _ in kw[1]} >= {"guitar", "album"}
    assert "today" not in {w for w, _ in kw[0]} | {w for w, _ in kw[1]}
    assert class_tfidf({0: ["the and of"]}, 3) == {0: []}


def test_sample_sizes_scale_with_the_run() -> None:
    cfg = ClusterConfig(Path("."), Path("."))
    assert sample_parameters(cfg, 1_000_000, 60_000) == (300, 300), "min_samples: HDBSCAN's default"
    assert sample_parameters(cfg, 6_000, 6_000) == (30, 30)
    cfg.min_cluster_size, cfg.min_samples = 200, 3
    assert sample_parameters(cfg, 100_000, 10_000) == (20, 3)
    assert len(choose_sample(100, 1000, 0)) == 100
    s = choose_sample(10_000, 500, 0)
    assert len(s) == 500 and np.all(np.diff(s) > 0)


def test_clusters_are_numbered_from_the_largest() -> None:
    assert relabel_by_size(np.array([3, 3, -1, 0, 3, 0, 7])).tolist() == [0, 0, -1, 1, 0, 1, 2]


def test_keyword_sample_and_candidates_are_bounded_per_cluster() -> None:
    labels = np.array([0] * 50 + [1] * 5 + [-1] * 20)
    pick = keyword_sample(labels, 10, seed=0)
    assert np.bincount(labels[pick] + 1).tolist() == [10, 10, 5]
    sims = np.r_[np.linspace(0, 1, 50), np.linspace(0, 1, 5), np.full(20, np.nan)].astype(np.float32)
    cand = representative_candidates(labels, sims, 2)
    assert sorted(cand.tolist()) == [48, 49, 53, 54]


def test_snippets_are_one_line_and_bounded() -> None:
    assert snippet("a\n\n b\tc") == "a b c"
    assert snippet(None) == "(text unavailable)" and snippet("  ") == "(empty text)"
    assert len(snippet("x" * 1000)) == 300


def test_progress_reports_steps_and_counts() -> None:
    out = io.StringIO()
    lines: list[str] = []
    p = Progress(stream=out, every_s=0.0, sink=lines.append)
    with p.step("reading"):
        p.count("rows", 5, 10)
    assert "reading ..." in out.getvalue() and "rows: 5/10 (50%)" in out.getvalue()
    assert "reading" in p.timings and len(lines) == 3


def test_cpu_backend_without_cuml() -> None:
    if gpu_available():
        pytest.skip("RAPIDS cuML and a CUDA device are present: the CPU fallback is not exercised here")
    assert select_backend("auto").name == "cpu"
    with pytest.raises(RuntimeError, match="cuML"):
        select_backend("cuda")


def test_gpu_backend_clusters_like_the_cpu_one() -> None:
    if not gpu_available():
        pytest.skip("no CUDA device with RAPIDS cuML on this machine: the GPU path is not exercised")
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(c, 0.3, (300, 5)) for c in (0.0, 5.0, 10.0)]).astype(np.float32)
    gpu_labels, _ = select_backend("cuda").hdbscan(x, 30, 5, "eom")
    cpu_labels, _ = select_backend("cpu").hdbscan(x, 30, 5, "eom")
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(cpu_labels, gpu_labels) >= 0.95
