"""The sample corpus generator: deterministic and with the promised mix."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from corpus.generate import generate_corpus


def _texts(paths: list[Path]) -> list[str | None]:
    out: list[str | None] = []
    for p in paths:
        out.extend(pq.read_table(p).column("text").to_pylist())
    return out


def test_layout_and_determinism(tmp_path: Path) -> None:
    a = generate_corpus(tmp_path / "a", suffixes=2, subreddits=3, files_per_subreddit=2, rows_per_file=50, seed=7)
    b = generate_corpus(tmp_path / "b", suffixes=2, subreddits=3, files_per_subreddit=2, rows_per_file=50, seed=7)
    assert len(a) == 2 * 3 * 2
    assert all(
        p.relative_to(tmp_path / "a").parts[0] == "chains" and len(p.relative_to(tmp_path / "a").parts) == 4 for p in a
    )
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    c = generate_corpus(tmp_path / "c", suffixes=2, subreddits=3, files_per_subreddit=2, rows_per_file=50, seed=8)
    assert _texts(a) != _texts(c)


def test_mix_has_long_short_repeated_unicode_null_and_empty(tmp_path: Path) -> None:
    paths = generate_corpus(tmp_path, subreddits=4, files_per_subreddit=2, rows_per_file=400, seed=1)
    texts = _texts(paths)
    present = [t for t in texts if t is not None]
    assert any(t is None for t in texts)
    assert any(t.strip() == "" for t in present)
    assert any(len(t.split()) > 300 for t in present), "long posts beyond 256 tokens"
    assert any(len(t.split()) <= 3 for t in present), "short replies"
    assert any(any(ord(ch) > 0x1F000 for ch in t) for t in present), "emoji"
    assert len(set(present)) < len(present), "texts repeat across chains"
