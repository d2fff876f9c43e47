"""The worker's data path without a bus or a model: paths, reading, cleaning,
deduplication, the output writer and the whole pipeline with a stand-in
embedder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bus.constants import EMBEDDING_DIM
from bus.errors import BadInput, ModelMismatch, UnsafePath
from bus.messages import Job
from bus.transport import Delivery
from workers.cleaning import clean, decode
from workers.dedup import DedupCache, embed_rows
from workers.embedder import HashEmbedder
from workers.limits import MemoryBudget, PartTooLarge, parse_size
from workers.paths import DataRoots, fingerprint
from workers.pipeline import EmbedPipeline
from workers.reader import open_part, read_chunk
from workers.result import JobResult
from workers.writer import Provenance, is_up_to_date, read_metadata

MODEL = "all-MiniLM-L6-v2@test"


def write(root: Path, rel: str, table: pa.Table, row_group_size: int | None = None) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def texts_table(texts: list[str | None], ids: bool = True) -> pa.Table:
    cols: dict[str, pa.Array] = {"text": pa.array(texts, pa.string())}
    if ids:
        cols["id"] = pa.array([f"id{i}" for i in range(len(texts))], pa.string())
    return pa.table(cols)


def job_for(
    root: Path,
    rel: str,
    rows: tuple[int, int] | None = None,
    id_column: str | None = "id",
    model: str = MODEL,
    column: str = "text",
) -> Job:
    path = root / rel
    fp = fingerprint(path) if path.exists() else "0-0"
    return Job.create(rel, fp, model, rows=rows, id_column=id_column, column=column)


def run_job(pipe: EmbedPipeline, job: Job) -> JobResult:
    prepared = pipe.prepare(Delivery(job, job.lane, "1-0"))
    try:
        return pipe.run(prepared, lambda: None)
    finally:
        prepared.close()


@pytest.fixture
def roots(tmp_path: Path) -> DataRoots:
    (tmp_path / "in").mkdir()
    return DataRoots.create(tmp_path / "in", tmp_path / "out")


@pytest.fixture
def pipe(roots: DataRoots) -> EmbedPipeline:
    prov = Provenance("python-test-1", "python", "cpu", "fp32", "0.1.0")
    return EmbedPipeline(roots, HashEmbedder(MODEL), prov, chunk_rows=4)


# -- cleaning -----------------------------------------------------------------
def test_null_rows_are_skipped_and_counted() -> None:
    c = clean(["a", None, "b", None])
    assert c.texts == ["a", "b"] and c.positions.tolist() == [0, 2]
    assert (c.counts.rows_null, c.counts.rows_embedded, c.counts.rows_total) == (2, 2, 4)


def test_empty_and_whitespace_rows_are_embedded_as_is_and_counted() -> None:
    c = clean(["", " ", "\n\t ", "\u3000", "x"])
    assert c.texts == ["", " ", "\n\t ", "\u3000", "x"]
    assert c.counts.rows_empty == 4


def test_invalid_utf8_is_decoded_with_replacement_and_counted() -> None:
    c = clean([b"fine", b"caf\xc3\xa9", b"bad \xff\xfe end", None])
    assert c.texts == ["fine", "café", "bad \ufffd\ufffd end"]
    assert c.counts.rows_invalid_utf8 == 1 and c.counts.rows_null == 1
    assert decode(b"\xc3") == ("\ufffd", True)


def test_identical_texts_are_embedded_once_and_counted() -> None:
    emb = HashEmbedder(MODEL)
    cache = DedupCache()
    first = embed_rows(["a", "b", "a", "a"], emb, cache)
    assert emb.calls == [2] and first.rows_deduplicated == 2
    assert np.array_equal(first.embeddings[0], first.embeddings[2])
    second = embed_rows(["b", "c"], emb, cache)  # "b" comes from the previous chunk
    assert emb.calls == [2, 1] and second.rows_deduplicated == 1
    assert np.array_equal(second.embeddings[0], first.embeddings[1])


def test_dedup_cache_stops_growing_at_its_budget() -> None:
    emb = HashEmbedder(MODEL)
    cache = DedupCache(max_bytes=3000)
    embed_rows(["a", "b", "c"], emb, cache)
    assert len(cache.entries) == 1 and cache.used <= 3000
    again = embed_rows(["a", "b"], emb, cache)  # "b" was not kept: embedded again, same vector
    assert emb.calls == [3, 1] and again.rows_deduplicated == 1


def test_truncated_rows_are_counted_per_row_including_duplicates() -> None:
    long = " ".join(["word"] * 300)
    done = embed_rows([long, "short", long], HashEmbedder(MODEL), DedupCache())
    assert done.rows_truncated == 2 and done.rows_deduplicated == 1


# -- paths --------------------------------------------------------------------
def test_paths_escaping_the_root_are_refused(roots: DataRoots, tmp_path: Path) -> None:
    secret = tmp_path / "secret.parquet"
    write(tmp_path, "secret.parquet", texts_table(["x"]))
    (roots.input_root / "chains").mkdir()
    os.symlink(secret, roots.input_root / "chains" / "link.parquet")
    os.symlink(tmp_path, roots.input_root / "chains" / "dirlink")
    with pytest.raises(UnsafePath, match=r"chains/link\.parquet"):
        roots.input("chains/link.parquet")
    with pytest.raises(UnsafePath):
        roots.input("chains/dirlink/secret.parquet")
    with pytest.raises(UnsafePath):
        roots.input("chains/../../secret.parquet")
    with pytest.raises(UnsafePath):
        roots.input("/etc/passwd")
    with pytest.raises(BadInput, match=r"chains/none\.parquet: input file not found"):
        roots.input("chains/none.parquet")


def test_a_symlink_inside_the_root_is_followed(roots: DataRoots) -> None:
    real = write(roots.input_root, "chains/a/r/real.parquet", texts_table(["x"]))
    os.symlink(real, roots.input_root / "chains" / "a" / "r" / "alias.parquet")
    assert roots.input("chains/a/r/alias.parquet") == real.resolve()


def test_output_symlinked_out_of_the_root_is_refused(roots: DataRoots, tmp_path: Path) -> None:
    (roots.output_root / "embeddings").mkdir(parents=True)
    os.symlink(tmp_path, roots.output_root / "embeddings" / "s")
    with pytest.raises(UnsafePath):
        roots.output("embeddings/s/x.parquet")


# -- reading ------------------------------------------------------------------
def test_reader_reads_only_the_row_range_in_chunks(roots: DataRoots) -> None:
    path = write(roots.input_root, "chains/s/r/f.parquet", texts_table([f"t{i}" for i in range(20)]), 5)
    part = open_part("chains/s/r/f.parquet", path, "text", "id", (5, 15))
    chunk = read_chunk(part, 2, 4)
    assert chunk.start == 7 and chunk.values == ["t7", "t8", "t9", "t10"]
    assert chunk.ids is not None and chunk.ids.type == pa.string() and chunk.ids.to_pylist()[0] == "id7"


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"", "not a readable parquet file"),
        (b"this is not parquet at all", "not a readable parquet file"),
        (b"PAR1" + b"\x00" * 64, "not a readable parquet file"),
    ],
)
def test_unreadable_files_are_bad_input_naming_the_file(roots: DataRoots, content: bytes, problem: str) -> None:
    path = roots.input_root / "bad.parquet"
    path.write_bytes(content)
    with pytest.raises(BadInput, match=f"^bad.parquet: {problem}"):
        open_part("bad.parquet", path, "text", None, None)


def test_truncated_file_is_bad_input(roots: DataRoots) -> None:
    path = write(roots.input_root, "t.parquet", texts_table(["x"] * 100))
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(BadInput, match=r"^t\.parquet: not a readable parquet file"):
        open_part("t.parquet", path, "text", None, None)


def test_corrupt_data_pages_are_bad_input(roots: DataRoots) -> None:
    table = texts_table([f"row number {i} " * 20 for i in range(200)], ids=False)
    path = roots.input_root / "c.parquet"
    pq.write_table(table, path, compression="snappy")
    col = pq.ParquetFile(path).metadata.row_group(0).column(0)
    raw = bytearray(path.read_bytes())
    start = col.dictionary_page_offset or col.data_page_offset
    raw[start : start + 64] = b"\xff" * 64  # the first page header is garbage now
    path.write_bytes(bytes(raw))
    part = open_part("c.parquet", path, "text", None, None)
    with pytest.raises(BadInput, match=r"^c\.parquet: corrupt parquet data"):
        read_chunk(part, 0, 200)


def test_missing_columns_are_bad_input(roots: DataRoots) -> None:
    path = write(roots.input_root, "m.parquet", texts_table(["x"]))
    with pytest.raises(BadInput, match=r"^m\.parquet: missing column 'body'"):
        open_part("m.parquet", path, "body", None, None)
    with pytest.raises(BadInput, match=r"^m\.parquet: missing column 'uid'"):
        open_part("m.parquet", path, "text", "uid", None)


@pytest.mark.parametrize("arrow_type", [pa.int64(), pa.float32(), pa.list_(pa.string()), pa.bool_()])
def test_wrong_text_column_type_is_bad_input(roots: DataRoots, arrow_type: pa.DataType) -> None:
    value = [["x"]] if pa.types.is_list(arrow_type) else [True] if pa.types.is_boolean(arrow_type) else [1]
    path = write(roots.input_root, "w.parquet", pa.table({"text": pa.array(value, arrow_type)}))
    shown = str(arrow_type).split("<")[0]
    with pytest.raises(BadInput, match=f"^w.parquet: column 'text' has type {shown}.*expected a string or binary"):
        open_part("w.parquet", path, "text", None, None)


def test_row_range_past_the_end_is_bad_input(roots: DataRoots) -> None:
    path = write(roots.input_root, "r.parquet", texts_table(["x"] * 3))
    with pytest.raises(BadInput, match=r"^r.parquet: row range \[0, 10\) is beyond the file's 3 rows"):
        open_part("r.parquet", path, "text", None, (0, 10))


def test_string_column_with_invalid_utf8_is_read_as_bytes(roots: DataRoots) -> None:
    raw = pa.array([b"ok", b"\xff bad", None], pa.binary())
    bogus = pa.Array.from_buffers(pa.string(), 3, raw.buffers()[:3], null_count=1)
    path = write(roots.input_root, "u.parquet", pa.table({"text": bogus}))
    part = open_part("u.parquet", path, "text", None, None)
    chunk = read_chunk(part, 1, 2)
    assert chunk.values == [b"\xff bad", None]
    assert clean(chunk.values).counts.rows_invalid_utf8 == 1


# -- writer and up-to-date --------------------------------------------------------
def test_pipeline_writes_the_output_format(pipe: EmbedPipeline, roots: DataRoots) -> None:
    texts = ["a", None, "b", "a", "", "  ", None, "c", "b", "d"]
    rel = "chains/2024-01/sub/f.parquet"
    write(roots.input_root, rel, texts_table(texts), row_group_size=3)
    job = job_for(roots.input_root, rel)
    result = run_job(pipe, job)
    out = roots.output_root / job.out
    table = pq.read_table(out)
    assert table.schema.field("row").type == pa.int64()
    assert table.schema.field("id").type == pa.string()
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), EMBEDDING_DIM)
    assert table.column("row").to_pylist() == [0, 2, 3, 4, 5, 7, 8, 9]
    assert table.column("id").to_pylist() == [f"id{i}" for i in (0, 2, 3, 4, 5, 7, 8, 9)]
    emb = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    expected = HashEmbedder(MODEL).encode(["a", "b", "a", "", "  ", "c", "b", "d"]).embeddings
    assert np.array_equal(emb, expected)
    meta = read_metadata(out)
    assert meta["embedfleet.model_id"] == MODEL and meta["embedfleet.input_fingerprint"] == job.fingerprint
    assert meta["embedfleet.input_path"] == rel and meta["embedfleet.job_id"] == job.id
    assert (meta["embedfleet.row_start"], meta["embedfleet.row_end"]) == ("0", "10")
    assert meta["embedfleet.worker_kind"] == "python" and meta["embedfleet.normalized"] == "true"
    assert meta["embedfleet.format_version"] == "1"
    names = ("embedfleet.rows_", "embedfleet.model_calls")
    counts = {k.removeprefix("embedfleet."): int(v) for k, v in meta.items() if k.startswith(names)}
    assert counts == {
        "rows_total": 10,
        "rows_embedded": 8,
        "rows_null": 2,
        "rows_empty": 2,
        "rows_invalid_utf8": 0,
        "rows_truncated": 0,
        "rows_deduplicated": 2,
        "rows_reused": 0,
        "rows_exact": 8,
        "rows_int8": 0,
        "model_calls": 6,
    }
    assert result.counts.as_dict() == counts and result.rows == 8 and not result.skipped
    assert pl.read_parquet(out).height == 8  # polars reads it as-is
    assert [p.name for p in out.parent.iterdir()] == ["f.parquet"]  # no temporary left


def test_row_range_job_writes_absolute_rows_and_no_id_without_idcol(pipe: EmbedPipeline, roots: DataRoots) -> None:
    rel = "chains/s/r/big.parquet"
    write(roots.input_root, rel, texts_table([f"t{i}" for i in range(12)]), row_group_size=4)
    job = job_for(roots.input_root, rel, rows=(4, 12), id_column=None)
    run_job(pipe, job)
    out = roots.output_root / "embeddings/s/r/big.rows-4-12.parquet"
    table = pq.read_table(out)
    assert table.column_names == ["row", "embedding"]
    assert table.column("row").to_pylist() == list(range(4, 12))
    assert read_metadata(out)["embedfleet.row_start"] == "4"


def test_zero_rows_give_an_empty_output_and_success(pipe: EmbedPipeline, roots: DataRoots) -> None:
    rel = "chains/s/r/empty.parquet"
    write(roots.input_root, rel, pa.table({"text": pa.array([], pa.string()), "id": pa.array([], pa.int32())}))
    result = run_job(pipe, job_for(roots.input_root, rel))
    table = pq.read_table(roots.output_root / "embeddings/s/r/empty.parquet")
    assert table.num_rows == 0 and table.schema.field("id").type == pa.int32()
    assert result.rows == 0 and result.counts.rows_total == 0


def test_all_null_column_gives_an_empty_output(pipe: EmbedPipeline, roots: DataRoots) -> None:
    rel = "chains/s/r/nulls.parquet"
    write(roots.input_root, rel, pa.table({"text": pa.nulls(3)}))
    result = run_job(pipe, job_for(roots.input_root, rel, id_column=None))
    assert result.counts.rows_null == 3 and result.rows == 0


def test_binary_text_column_is_decoded(pipe: EmbedPipeline, roots: DataRoots) -> None:
    rel = "chains/s/r/bin.parquet"
    write(roots.input_root, rel, pa.table({"text": pa.array([b"ok", b"\xffx", None], pa.binary())}))
    result = run_job(pipe, job_for(roots.input_root, rel, id_column=None))
    assert result.counts.rows_invalid_utf8 == 1 and result.rows == 2


def test_id_column_keeps_its_arrow_type(pipe: EmbedPipeline, roots: DataRoots) -> None:
    rel = "chains/s/r/ids.parquet"
    table = pa.table({"text": ["a", "b"], "id": pa.array([7, 9], pa.uint32())})
    write(roots.input_root, rel, table)
    run_job(pipe, job_for(roots.input_root, rel))
    out = pq.read_table(roots.output_root / "embeddings/s/r/ids.parquet")
    assert out.schema.field("id").type == pa.uint32() and out.column("id").to_pylist() == [7, 9]


def test_up_to_date_output_is_skipped_without_recomputing(pipe: EmbedPipeline, roots: DataRoots) -> None:
    rel = "chains/s/r/f.parquet"
    write(roots.input_root, rel, texts_table(["a", "b", None]))
    job = job_for(roots.input_root, rel)
    run_job(pipe, job)
    out = roots.output_root / job.out
    before = out.stat().st_mtime_ns
    emb = pipe.embedder
    assert isinstance(emb, HashEmbedder)
    calls = len(emb.calls)
    again = run_job(pipe, job)
    assert again.skipped and again.rows == 2 and again.counts.rows_null == 1
    assert len(emb.calls) == calls and out.stat().st_mtime_ns == before
    assert is_up_to_date(out, job) is not None
    other_model = Job.create(job.path, job.fingerprint, "other@1", id_column="id")
    assert is_up_to_date(out, other_model) is None


def test_stale_output_is_recomputed(pipe: EmbedPipeline, roots: DataRoots) -> None:
    rel = "chains/s/r/f.parquet"
    path = write(roots.input_root, rel, texts_table(["a"]))
    run_job(pipe, job_for(roots.input_root, rel))
    write(roots.input_root, rel, texts_table(["a", "b"]))
    os.utime(path, ns=(1, 2_000_000_000))
    result = run_job(pipe, job_for(roots.input_root, rel))
    assert not result.skipped and result.rows == 2


def test_failed_job_leaves_no_temporary_and_no_output(roots: DataRoots) -> None:
    class Boom(HashEmbedder):
        def encode(self, texts):  # type: ignore[no-untyped-def]
            raise RuntimeError("device fell over")

    prov = Provenance("w", "python", "cpu", "fp32", "0")
    pipe = EmbedPipeline(roots, Boom(MODEL), prov)
    rel = "chains/s/r/f.parquet"
    write(roots.input_root, rel, texts_table(["a"]))
    with pytest.raises(RuntimeError):
        run_job(pipe, job_for(roots.input_root, rel))
    out_dir = roots.output_root / "embeddings/s/r"
    assert not out_dir.exists() or list(out_dir.iterdir()) == []  # the temporary is made with the first rows


def test_changed_input_and_other_model_are_permanent(pipe: EmbedPipeline, roots: DataRoots) -> None:
    rel = "chains/s/r/f.parquet"
    write(roots.input_root, rel, texts_table(["a"]))
    stale = Job.create(rel, "1-1", MODEL)
    with pytest.raises(BadInput, match=f"^{rel}: input changed since the scan"):
        run_job(pipe, stale)
    with pytest.raises(ModelMismatch, match=f"^{rel}: job wants model other@1"):
        run_job(pipe, job_for(roots.input_root, rel, model="other@1"))


# -- limits -------------------------------------------------------------------
def test_sizes_parse() -> None:
    assert parse_size("4G") == 4 << 30 and parse_size("512m") == 512 << 20 and parse_size("1.5GiB") == 3 << 29
    assert parse_size("1000") == 1000
    with pytest.raises(ValueError):
        parse_size("lots")


def test_memory_ceiling_shrinks_chunks_and_refuses_what_cannot_fit(roots: DataRoots) -> None:
    budget = MemoryBudget(ceiling=1)  # already above it: no headroom at all
    assert budget.fit_rows(10_000, 1000, minimum=100) == 100
    with pytest.raises(PartTooLarge, match="needs about"):
        budget.require(1 << 20, "chains/x.parquet")
    prov = Provenance("w", "python", "cpu", "fp32", "0")
    pipe = EmbedPipeline(roots, HashEmbedder(MODEL), prov, memory=budget)
    rel = "chains/s/r/f.parquet"
    write(roots.input_root, rel, texts_table(["a"] * 50))
    with pytest.raises(PartTooLarge, match=f"^{rel}: needs about"):
        run_job(pipe, job_for(roots.input_root, rel))
    roomy = MemoryBudget(ceiling=1 << 50)
    assert roomy.fit_rows(10_000, 1000, minimum=100) == 10_000
