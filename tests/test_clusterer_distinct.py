"""The clusterer fits on distinct texts: rows keyed by their text as the
workers key it, repeats (across chains, files and suffixes) counted once,
every row labelled through its text.

Outputs are made by the real worker pipeline (``workers.pipeline``) on an
in-memory bus, with a stand-in model that has topic signal: a text's vector
is its topic's centre plus noise seeded by the text's key, so equal texts get
equal vectors, as with the real model."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from bus.constants import EMBEDDING_DIM
from bus.memory import MemoryTransport
from bus.textkey import text_key, text_keys
from clusterer.catalog import load_catalog
from clusterer.cli import main
from clusterer.distinct import deduplicate
from clusterer.progress import Progress
from clusterer.reader import gather, iter_embeddings
from clusterer.textkeys import RowKeys, key_texts, row_keys
from corpus.generate import TOPICS, generate_corpus
from workers.embedder import Embedder, Encoded, HashEmbedder
from workers.paths import DataRoots
from workers.pipeline import EmbedPipeline
from workers.testing import enqueue_all, jobs_for
from workers.writer import Provenance

MODEL = "all-MiniLM-L6-v2@distinct-test"
FAST = ["--reducer", "pca", "--map-points", "0", "-q"]
COPIES = 10
QUIET = Progress(quiet=True)


class TopicEmbedder:
    """Unit vectors near the centre of the topic whose words a text uses most
    (pure noise for a text with none, such as "lol"), seeded by the text key."""

    device = "cpu"
    precision = "fp32"

    def __init__(self, model_id: str = MODEL, spread: float = 0.8) -> None:
        self.model_id = model_id
        self.spread = spread
        rng = np.random.default_rng(0)
        centres = rng.standard_normal((len(TOPICS), EMBEDDING_DIM))
        self.centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)
        self.vocab = [set(words) for words in TOPICS.values()]

    def topic(self, text: str) -> int | None:
        words = set(re.findall(r"[a-z]+", text.lower()))
        hits = [len(words & v) for v in self.vocab]
        return int(np.argmax(hits)) if max(hits) else None

    def encode(self, texts: Sequence[str]) -> Encoded:
        out = np.empty((len(texts), EMBEDDING_DIM), dtype=np.float32)
        for i, (text, key) in enumerate(zip(texts, text_keys(self.model_id, texts), strict=True)):
            noise = np.random.default_rng(int.from_bytes(key[:8], "little")).standard_normal(EMBEDDING_DIM)
            noise /= np.linalg.norm(noise)
            t = self.topic(text)
            v = noise if t is None else self.centres[t] + self.spread * noise
            out[i] = v / np.linalg.norm(v)
        return Encoded(out, np.zeros(len(texts), dtype=bool))


def embed_all(root: Path, embedder: Embedder, id_column: str | None = "id") -> int:
    """Every input under ``root/chains`` through the worker pipeline (both roots ``root``)."""
    files = sorted((root / "chains").rglob("*.parquet"))
    bus = MemoryTransport()
    enqueue_all(bus, jobs_for(root, files, embedder.model_id, id_column=id_column))
    pipeline = EmbedPipeline(DataRoots.create(root, root), embedder, Provenance("t", "python", "cpu", "fp32", "0"))
    rows = 0
    while (d := bus.claim("t", ["default"], 0)) is not None:
        prepared = pipeline.prepare(d)
        try:
            done = pipeline.run(prepared, lambda: None).rows
        finally:
            prepared.close()
        bus.complete("t", d, done)
        rows += done
    return rows


def copy_suffixes(single: Path, copy: Path, copies: int) -> None:
    """``copy/chains`` holds ``copies`` suffixes, each a copy of the single suffix of ``single``."""
    (suffix,) = (single / "chains").iterdir()
    for i in range(copies):
        shutil.copytree(suffix, copy / "chains" / f"copy-{i:02d}")


def topics_of(df: pl.DataFrame) -> np.ndarray:
    """The subreddit (topic) of each row of ``clusters.parquet``."""
    return df["input_path"].str.split("/").list.get(2).to_numpy()


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A corpus and a 10-suffix copy of it, both embedded and clustered."""
    base = tmp_path_factory.mktemp("distinct")
    single, copy = base / "single", base / "copy"
    generate_corpus(single, subreddits=4, files_per_subreddit=2, rows_per_file=150, seed=4)
    copy_suffixes(single, copy, COPIES)
    for root in (single, copy):
        embed_all(root, TopicEmbedder())
        assert main(["--data-root", str(root), *FAST]) == 0
    return single, copy


# -- the acceptance tests ------------------------------------------------------
def test_a_ten_copy_corpus_clusters_its_texts_as_the_single_copy_does(corpora: tuple[Path, Path]) -> None:
    single, copy = (pl.read_parquet(root / "clusters" / "clusters.parquet") for root in corpora)
    assert copy.height == COPIES * single.height
    one = single.group_by("text_key").agg(pl.col("cluster").first()).sort("text_key")
    ten = copy.group_by("text_key").agg(pl.col("cluster").first()).sort("text_key")
    assert one["text_key"].to_list() == ten["text_key"].to_list(), "the copies hold the same distinct texts"
    assert adjusted_rand_score(one["cluster"], ten["cluster"]) == 1.0, "each text gets the same cluster"
    nmi_one = normalized_mutual_info_score(topics_of(single), single["cluster"])
    nmi_ten = normalized_mutual_info_score(topics_of(copy), copy["cluster"])
    assert nmi_one > 0.3, "the stand-in model has topic signal to find"
    assert abs(nmi_ten - nmi_one) <= 0.01


def test_no_cluster_is_one_repeated_text(corpora: tuple[Path, Path]) -> None:
    _, copy = corpora
    df = pl.read_parquet(copy / "clusters" / "clusters.parquet").filter(pl.col("cluster") >= 0)
    per_cluster = df.group_by("cluster").agg(
        texts=pl.col("text_key").n_unique(),
        top_text_share=pl.col("text_key").value_counts(sort=True).first().struct.field("count") / pl.len(),
    )
    assert (per_cluster["texts"] >= 20).all(), "every cluster is many texts (the smallest cluster size)"
    assert (per_cluster["top_text_share"] < 0.5).all(), "no cluster is mostly one text"


def test_every_row_of_a_text_has_its_label_and_counts_add_up(corpora: tuple[Path, Path]) -> None:
    _, copy = corpora
    df = pl.read_parquet(copy / "clusters" / "clusters.parquet")
    summary = json.loads((copy / "clusters" / "clusters_summary.json").read_text())
    per_text = df.group_by("text_key").agg(
        pl.len().alias("n"),
        pl.col("multiplicity").first(),
        *(pl.col(c).n_unique().alias(f"{c}_values") for c in ("cluster", "probability", "outlier")),
    )
    assert (per_text["n"] >= COPIES).all(), "every text recurs in each copy"
    assert (per_text["n"] == per_text["multiplicity"]).all()
    assert (per_text.select(pl.col("^.*_values$")) == 1).to_numpy().all(), "rows of one text share their label"
    assert summary["points"] == df.height and summary["texts"] == per_text.height
    clusters = summary["cluster_list"]
    assert sum(c["rows"] for c in clusters) + summary["noise"] == df.height
    assert sum(c["texts"] for c in clusters) + summary["noise_texts"] == per_text.height
    rows_by_cluster = dict(df.filter(pl.col("cluster") >= 0).group_by("cluster").len().iter_rows())
    assert {c["id"]: c["rows"] for c in clusters} == rows_by_cluster
    assert summary["identity"]["rows_by_vector"] == 0
    md = (copy / "clusters" / "report.md").read_text()
    assert "| cluster | theme | topic | rows | share | distinct texts | top keywords |" in md
    assert f"{df.height:,} rows holding {per_text.height:,} distinct texts" in md
    html = (copy / "clusters" / "report.html").read_text()
    assert "<th>distinct texts</th>" in html


def test_text_key_column_joins_with_the_workers_keys(corpora: tuple[Path, Path]) -> None:
    single, _ = corpora
    df = pl.read_parquet(single / "clusters" / "clusters.parquet")
    assert df["text_key"].is_not_null().all()
    for (path,), g in df.partition_by("input_path", as_dict=True).items():
        texts = pq.read_table(single / str(path), columns=["text"]).column("text").to_pylist()
        expected = [k.hex() for k in text_keys(MODEL, [texts[r] for r in g["row"]])]
        assert g["text_key"].to_list() == expected, path


def test_keywords_and_representatives_come_from_distinct_texts(corpora: tuple[Path, Path]) -> None:
    _, copy = corpora
    summary = json.loads((copy / "clusters" / "clusters_summary.json").read_text())
    for c in summary["cluster_list"]:
        texts = [r["text"] for r in c["representatives"]]
        assert len(texts) == len(set(texts)), "a repeated text is shown once"
        assert all(r["rows"] >= COPIES for r in c["representatives"]), "with its row count"
        assert c["keywords"], "each cluster has keywords"


# -- texts that cannot be read, and texts that are not valid UTF-8 -------------
def test_unreadable_texts_fall_back_to_identical_vectors(tmp_path: Path) -> None:
    generate_corpus(tmp_path / "one", subreddits=2, files_per_subreddit=1, rows_per_file=150, seed=2)
    copy_suffixes(tmp_path / "one", tmp_path, 3)
    rows = embed_all(tmp_path, TopicEmbedder())
    err = tmp_path / "err.txt"
    args = ["--data-root", str(tmp_path), "--text-column", "no_such_column", "--reducer", "pca", "--map-points", "0"]
    with err.open("w") as f, pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.stderr", f)
        assert main(args) == 0
    assert "deduplicated by identical embedding vectors" in err.read_text()
    df = pl.read_parquet(tmp_path / "clusters" / "clusters.parquet")
    summary = json.loads((tmp_path / "clusters" / "clusters_summary.json").read_text())
    assert df.height == rows and df["text_key"].is_null().all()
    assert summary["identity"]["rows_by_vector"] == rows and len(summary["identity"]["unreadable_inputs"]) == 6
    texts = {t for f in (tmp_path / "one").rglob("*.parquet") for t in pq.read_table(f)["text"].to_pylist()}
    assert summary["texts"] == len(texts - {None}), "equal texts have equal vectors, so each counts once"
    assert (df.group_by("input_path", "row").len()["len"] == 1).all()
    assert "Texts unavailable" in (tmp_path / "clusters" / "report.md").read_text()


def test_invalid_utf8_is_keyed_as_the_workers_decode_it(tmp_path: Path) -> None:
    raw = [b"caf\xe9 au lait", b"ok", None, b"caf\xe9 au lait", "caf\u00e9".encode(), b"\xff\xfe", b"ok"]
    binary = pa.array(raw, pa.binary())
    as_string = pa.Array.from_buffers(pa.string(), len(raw), binary.buffers()[:3], null_count=1)
    for sub, column in (("binary", binary), ("string", as_string)):
        path = tmp_path / "chains" / "2024-01" / sub / "f.parquet"
        path.parent.mkdir(parents=True)
        pq.write_table(pa.table({"text": column}), path, row_group_size=3)
    embed_all(tmp_path, HashEmbedder(MODEL), id_column=None)
    parts = load_catalog(tmp_path).parts
    keys = row_keys(tmp_path, parts, "text", QUIET)
    assert keys.by_text.all() and not keys.unreadable
    decoded = [b.decode("utf-8", errors="replace") for b in raw if b is not None]
    expected = [text_key(MODEL, t) for t in decoded] * 2
    assert [bytes(k) for k in keys.keys] == expected
    distinct = deduplicate(keys)
    assert distinct.texts == 4 and distinct.multiplicity.tolist() == [4, 4, 2, 2]


# -- the building blocks --------------------------------------------------------
def test_key_texts_matches_bus_text_keys() -> None:
    texts = ["", " ", "lol", "Grüße aus 東京 🚀", "a\x00b", "x" * 10_000]
    out = np.empty((len(texts), 16), dtype=np.uint8)
    key_texts(MODEL, [t.encode() for t in texts], out)
    assert [bytes(k) for k in out] == text_keys(MODEL, texts)


def test_deduplicate_numbers_texts_by_first_row() -> None:
    names = ["b", "a", "b", "c", "a", "b"]
    raw = {n: text_key(MODEL, n) for n in names}
    keys = np.frombuffer(b"".join(raw[n] for n in names), dtype=np.uint8).reshape(-1, 16)
    by_text = np.array([True, True, True, False, True, True])
    d = deduplicate(RowKeys(keys.copy(), by_text, ["x: unreadable"]))
    assert d.first_row.tolist() == [0, 1, 3]
    assert d.of_row.tolist() == [0, 1, 0, 2, 1, 0]
    assert d.multiplicity.tolist() == [3, 2, 1]
    assert [bytes(k) for k in d.keys] == [raw["b"], raw["a"], raw["c"]]
    assert d.text_key_hex().to_list() == [
        raw["b"].hex(),
        raw["a"].hex(),
        raw["b"].hex(),
        None,
        raw["a"].hex(),
        raw["b"].hex(),
    ]


def test_streaming_a_selection_reads_only_those_rows(tmp_path: Path) -> None:
    generate_corpus(tmp_path, subreddits=2, files_per_subreddit=2, rows_per_file=60, seed=1)
    embed_all(tmp_path, HashEmbedder(MODEL))
    parts = load_catalog(tmp_path).parts
    everything = np.concatenate([arr for _, arr in iter_embeddings(parts, batch_rows=7)])
    pick = np.sort(np.random.default_rng(0).choice(len(everything), 50, replace=False))
    assert np.array_equal(gather(parts, pick, QUIET, "x"), everything[pick])
