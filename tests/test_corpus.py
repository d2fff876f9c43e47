"""The sample corpus generator: deterministic and with the promised mix."""

from __future__ import annotations

import argparse
import itertools
import random
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

import corpus.__main__ as corpus_cli
from bus.constants import INPUT_DIR
from corpus.generate import TOPICS, generate_corpus, topic_of
from corpus.stats import measure_corpus
from corpus.thread_corpus import ThreadCorpusSpec, generate_thread_corpus
from corpus.threads import COMMON_REPLIES, Thread, ThreadShape, grow_thread


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


# --- thread corpus (corpus.threads, corpus.thread_corpus, corpus.stats, the CLI) ---


def _rows(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Every row of ``paths`` in file order, with the file it came from."""
    out: list[dict[str, Any]] = []
    for p in paths:
        out.extend({**row, "file": p} for row in pq.read_table(p).to_pylist())
    return out


def _chains_of(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Consecutive rows of one chain in one file, grouped."""
    chains: list[list[dict[str, Any]]] = []
    for row in rows:
        if chains and (chains[-1][-1]["chain_id"], chains[-1][-1]["file"]) == (row["chain_id"], row["file"]):
            chains[-1].append(row)
        else:
            chains.append([row])
    return chains


SMALL = ThreadCorpusSpec(suffixes=2, subreddits=2, files_per_subreddit=3, threads_per_subreddit=12, seed=3)


def test_thread_chains_are_root_to_leaf_paths_of_the_tree() -> None:
    thread = Thread(texts=("post", "a", "b", "a1", "a2"), parents=(-1, 0, 0, 1, 1))
    assert thread.chains() == [[0, 2], [0, 1, 3], [0, 1, 4]]
    assert Thread(texts=("lonely post",), parents=(-1,)).chains() == [[0]]


def test_grown_threads_stay_within_the_shape() -> None:
    shape = ThreadShape(max_depth=4, max_messages=50)
    rng = random.Random(5)
    threads = [grow_thread(rng, TOPICS["space"], shape) for _ in range(200)]
    assert all(len(t.texts) <= 50 for t in threads)
    assert max(len(path) for t in threads for path in t.chains()) == 5, "root plus replies down to depth 4"
    assert any(len(t.chains()) > 10 for t in threads), "some threads branch widely"


def test_thread_corpus_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    a = generate_thread_corpus(tmp_path / "a", SMALL)
    b = generate_thread_corpus(tmp_path / "b", SMALL)
    assert [p.relative_to(tmp_path / "a") for p in a.paths] == [p.relative_to(tmp_path / "b") for p in b.paths]
    assert [p.read_bytes() for p in a.paths] == [p.read_bytes() for p in b.paths]
    c = generate_thread_corpus(tmp_path / "c", replace(SMALL, seed=4))
    assert _texts(list(a.paths)) != _texts(list(c.paths))


def test_every_chain_is_a_root_to_leaf_path_written_as_consecutive_rows(tmp_path: Path) -> None:
    rows = _rows(generate_thread_corpus(tmp_path, SMALL).paths)
    chains = _chains_of(rows)
    assert len({c[0]["chain_id"] for c in chains}) == len(chains), "a chain's rows are one contiguous block"
    assert len({r["id"] for r in rows}) == len(rows), "ids are unique per row"
    text_of = {r["message_id"]: r["text"] for r in rows}
    parents = {r["parent_id"] for r in rows}
    for chain in chains:
        assert [r["depth"] for r in chain] == list(range(len(chain)))
        assert chain[0]["parent_id"] is None
        assert chain[-1]["message_id"] not in parents, "a chain ends at a leaf"
        for above, row in itertools.pairwise(chain):
            assert row["parent_id"] == above["message_id"]
            assert text_of[row["parent_id"]] == above["text"], "the parent's text is the previous row"
    assert len({r["message_id"] for r in rows if r["parent_id"] is None}) == 2 * 12, "every thread is written"


def test_ancestors_repeat_in_every_chain_below_them(tmp_path: Path) -> None:
    rows = _rows(generate_thread_corpus(tmp_path, SMALL).paths)
    chains_per_root = Counter(r["thread_id"] for r in rows if r["depth"] == 0)
    assert max(chains_per_root.values()) > 5
    for thread_id, n in chains_per_root.items():
        assert sum(1 for r in rows if r["thread_id"] == thread_id and r["parent_id"] is None) == n


def test_a_threads_chains_land_in_several_files_and_suffixes(tmp_path: Path) -> None:
    rows = _rows(generate_thread_corpus(tmp_path, SMALL).paths)
    files: dict[str, set[Path]] = defaultdict(set)
    suffixes: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        files[r["thread_id"]].add(r["file"])
        suffixes[r["thread_id"]].add(r["file"].relative_to(tmp_path / INPUT_DIR).parts[0])
    spread = [t for t in files if len(files[t]) > 1 and len(suffixes[t]) > 1]
    assert len(spread) >= 3, f"threads split across files and suffixes: {spread}"


def test_common_short_replies_recur_across_threads_and_subreddits(tmp_path: Path) -> None:
    rows = _rows(generate_thread_corpus(tmp_path, SMALL).paths)
    threads: dict[str, set[str]] = defaultdict(set)
    topics: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        if r["text"] in COMMON_REPLIES:
            threads[r["text"]].add(r["thread_id"])
            topics[r["text"]].add(r["topic"])
    assert {"[deleted]", "lol", "This."} <= set(threads)
    assert all(len(threads[t]) > 3 for t in ("[deleted]", "lol", "This."))
    assert any(len(ts) > 1 for ts in topics.values()), "the same short reply in two subreddits"


def test_thread_corpus_has_topics_and_the_promised_mix(tmp_path: Path) -> None:
    stats = generate_thread_corpus(tmp_path, ThreadCorpusSpec(seed=1))
    rows = _rows(stats.paths)
    assert all(r["topic"] == topic_of(r["file"].parent.name) for r in rows)
    assert {r["topic"] for r in rows} == {"cooking", "space", "programming", "football"}
    present = [r["text"] for r in rows if r["text"] is not None]
    assert len(present) < len(rows), "some null texts"
    assert any(t.strip() == "" for t in present)
    assert any(len(t.split()) > 300 for t in present), "long posts beyond 256 tokens"
    assert any(any(ord(ch) > 0x1F000 for ch in t) for t in present), "emoji"
    assert 3.0 <= stats.repetition <= 8.0, stats


def test_returned_figures_match_the_files(tmp_path: Path) -> None:
    stats = generate_thread_corpus(tmp_path, SMALL)
    on_disk = sorted((tmp_path / INPUT_DIR).rglob("*.parquet"))
    texts = _texts(on_disk)
    distinct = len({t for t in texts if t is not None})
    assert list(stats.paths) == on_disk
    assert (stats.files, stats.rows, stats.distinct_texts) == (len(on_disk), len(texts), distinct)
    assert stats.repetition == len(texts) / distinct
    assert measure_corpus(tmp_path) == stats


def test_copies_multiply_rows_but_not_distinct_texts(tmp_path: Path) -> None:
    one = generate_thread_corpus(tmp_path / "one", SMALL)
    three = generate_thread_corpus(tmp_path / "three", replace(SMALL, copies=3))
    assert three.rows == 3 * one.rows
    assert three.files == 3 * one.files
    assert three.distinct_texts == one.distinct_texts
    assert three.repetition == pytest.approx(3 * one.repetition)
    assert sorted(p.name for p in (tmp_path / "three" / INPUT_DIR).iterdir()) == ["copy-01", "copy-02", "copy-03"]
    rows = _rows(three.paths)
    assert len({r["id"] for r in rows}) == len(rows), "ids stay unique per row across copies"
    assert measure_corpus(tmp_path / "three") == three


def test_cli_threads_mode_prints_the_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--output", str(tmp_path), "--mode", "threads", "--subreddits", "2", "--threads-per-subreddit", "10"]
    assert corpus_cli.main([*argv, "--copies", "2"]) == 0
    stats = measure_corpus(tmp_path)
    line = capsys.readouterr().out.strip()
    assert line == (
        f"wrote {stats.files:,} files, {stats.rows:,} rows ({stats.distinct_texts:,} distinct texts, "
        f"repetition {stats.repetition:.1f}x) under {tmp_path / INPUT_DIR}"
    )
    assert stats.files == 2 * len(list((tmp_path / INPUT_DIR / "copy-01").rglob("*.parquet")))


def test_cli_defaults_to_todays_chains_and_refuses_copies_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert corpus_cli.main(["--output", str(tmp_path / "a"), "--subreddits", "1", "--rows-per-file", "20"]) == 0
    expected = generate_corpus(tmp_path / "b", suffixes=2, subreddits=1, files_per_subreddit=3, rows_per_file=20)
    written = sorted((tmp_path / "a" / INPUT_DIR).rglob("*.parquet"))
    assert [p.read_bytes() for p in written] == [p.read_bytes() for p in expected]
    assert capsys.readouterr().out.startswith("wrote 6 files, 120 rows (")
    with pytest.raises(SystemExit):
        corpus_cli.main(["--output", str(tmp_path / "c"), "--copies", "2"])
    assert "--copies needs --mode threads" in capsys.readouterr().err


def test_cli_help_shows_every_default() -> None:
    parser = corpus_cli.build_parser()
    text = " ".join(parser.format_help().split("options:", 1)[1].split())
    options = [a for a in parser._actions if a.option_strings and a.default not in (None, argparse.SUPPRESS)]
    assert {o.dest for o in options} >= {"mode", "suffixes", "threads_per_subreddit", "copies", "seed"}
    for option in options:
        assert f"(default: {option.default})" in text.split(option.option_strings[0], 1)[1].split(" --", 1)[0]
