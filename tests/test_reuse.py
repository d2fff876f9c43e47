"""The reuse store: text identity, entry codec, the Redis scripts, and the
worker's fleet-wide reuse (docs/reuse.md)."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from bus import constants as c
from bus.errors import BusUnavailable
from bus.keys import Keys
from bus.messages import Job
from bus.reuse import ENTRY_BYTES, MemoryReuseStore, ReuseStore, decode_entry, encode_entries, encode_entry
from bus.reuse_redis import RedisReuseStore
from bus.textkey import text_key, text_keys
from bus.transport import Delivery
from tests.support.procs import free_port
from workers.cleaning import clean
from workers.embedder import HashEmbedder
from workers.paths import DataRoots, fingerprint
from workers.pipeline import EmbedPipeline
from workers.reuse import FleetReuse
from workers.writer import Provenance, read_metadata

VECTORS = Path(__file__).parent / "vectors"
MODEL = "all-MiniLM-L6-v2@test"
NS = "eftest"


def cell(case: dict[str, object]) -> str | bytes:
    if "bytes_hex" in case:
        return bytes.fromhex(str(case["bytes_hex"]))
    if "repeat" in case:
        return str(case["repeat"]) * int(str(case["times"]))
    return str(case["text"])


# -- vectors both suites load -----------------------------------------------------
def test_text_keys_match_the_shared_vectors_after_the_workers_cleaning() -> None:
    data = json.loads((VECTORS / "text_keys.json").read_text(encoding="utf-8"))
    assert len(data["cases"]) >= 15
    for case in data["cases"]:
        cleaned = clean([cell(case)])
        text = cleaned.texts[0]
        assert cleaned.counts.rows_invalid_utf8 == case["invalid_utf8"], case["name"]
        assert len(text.encode("utf-8")) == case["cleaned_bytes"], case["name"]
        if case["cleaned_utf8_hex"] is not None:
            assert text.encode("utf-8").hex() == case["cleaned_utf8_hex"], case["name"]
        assert text_key(data["model"], text).hex() == case["key"], case["name"]
    other = data["other_model"]
    assert text_key(other["model"], other["text"]).hex() == other["key"] != text_key(data["model"], "lol").hex()
    keys = [case["key"] for case in data["cases"]]
    assert len(set(keys)) == len(keys) - 1  # only "café" as bytes and as text share a key


def test_entries_encode_and_decode_as_the_shared_vectors_say() -> None:
    data = json.loads((VECTORS / "reuse_entries.json").read_text(encoding="utf-8"))
    assert data["entry_bytes"] == ENTRY_BYTES == 776
    for g in data["good"]:
        v = np.array(g["vector"], dtype=np.float32)
        value = encode_entry(g["cls"], v, g["truncated"], g["text_bytes"])
        assert value.hex() == g["value_hex"]
        entry = decode_entry(value, [g["cls"]], g["text_bytes"])
        assert entry is not None and entry.truncated == g["truncated"] and entry.cls == g["cls"]
        assert float(np.dot(entry.vector, v)) >= data["min_cosine"]
        assert abs(float(np.linalg.norm(entry.vector)) - 1.0) < 1e-6
    ok = data["accepted_by_int8"]
    assert decode_entry(bytes.fromhex(ok["value_hex"]), ok["classes"], ok["text_bytes"]) is not None
    for bad in data["bad"]:
        assert decode_entry(bytes.fromhex(bad["value_hex"]), bad["classes"], bad["text_bytes"]) is None, bad["why"]


def test_entries_encoded_in_bulk_are_the_entries_encoded_one_by_one() -> None:
    data = json.loads((VECTORS / "reuse_entries.json").read_text(encoding="utf-8"))
    good = data["good"]
    for cls in (c.REUSE_CLASS_EXACT, c.REUSE_CLASS_INT8):
        vectors = np.array([g["vector"] for g in good], dtype=np.float32)
        truncated = np.array([g["truncated"] for g in good], dtype=bool)
        lengths = [g["text_bytes"] for g in good[:-1]] + [1 << 40]  # a length past u32 saturates
        bulk = encode_entries(cls, vectors, truncated, lengths)
        one = [encode_entry(cls, v, bool(t), n) for v, t, n in zip(vectors, truncated, lengths, strict=True)]
        assert bulk == one and len({len(b) for b in bulk}) == 1
    assert encode_entries(c.REUSE_CLASS_EXACT, np.empty((0, c.EMBEDDING_DIM)), np.zeros(0, dtype=bool), []) == []


def test_key_names_built_in_bulk_are_the_names_built_one_by_one() -> None:
    keys = Keys(NS)
    ks = text_keys(MODEL, ["a", "b", "café", ""])
    for cls in (c.REUSE_CLASS_EXACT, c.REUSE_CLASS_INT8):
        assert [n.decode() for n in keys.reuse_entries(cls, ks)] == [keys.reuse_entry(cls, k) for k in ks]
        assert [n.decode() for n in keys.reuse_claims(cls, ks)] == [keys.reuse_claim(cls, k) for k in ks]


# -- the store, in memory and in Redis ---------------------------------------------
@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> ReuseStore:
    if request.param == "memory":
        return MemoryReuseStore()
    client = request.getfixturevalue("redis_client")
    return RedisReuseStore(client, namespace=NS)


def value_for(text: str, cls: str = c.REUSE_CLASS_EXACT) -> bytes:
    vec = HashEmbedder(MODEL).encode([text]).embeddings[0]
    return encode_entry(cls, vec, False, len(text.encode()))


def test_the_first_claimer_computes_and_the_others_wait_for_its_entry(store: ReuseStore) -> None:
    keys = text_keys(MODEL, ["a", "b"])
    e = [c.REUSE_CLASS_EXACT]
    first = store.claim(keys, e, "w1")
    assert [x.mine for x in first] == [True, True]
    second = store.claim(keys, e, "w2")
    assert [(x.mine, x.value) for x in second] == [(False, None), (False, None)]
    assert store.claim(keys[:1], e, "w1")[0].mine  # asking again keeps one's own claim
    assert store.put(c.REUSE_CLASS_EXACT, keys, [value_for("a"), b""], "w1") == 1
    after = store.claim(keys, e, "w2")
    assert after[0].value == value_for("a")
    assert after[1].mine  # w1 released "b" without a value: w2 may compute it
    assert store.lookup(keys, e) == [value_for("a"), None]


def test_an_int8_worker_reuses_exact_vectors_and_an_exact_one_never_reuses_int8(store: ReuseStore) -> None:
    keys = text_keys(MODEL, ["x", "y"])
    q, e = c.REUSE_CLASS_INT8, c.REUSE_CLASS_EXACT
    store.put(e, keys[:1], [value_for("x")], "w1")
    store.put(q, keys[1:], [value_for("y", q)], "w2")
    assert store.lookup(keys, [e, q]) == [value_for("x"), value_for("y", q)]
    assert store.lookup(keys, [e]) == [value_for("x"), None]
    z = text_keys(MODEL, ["z"])
    assert store.claim(z, [e], "exact")[0].mine
    assert not store.claim(z, [e, q], "int8")[0].mine  # waits for the more exact vector


def test_the_ceiling_is_respected_and_existing_entries_can_still_be_replaced(redis_client: redis.Redis) -> None:
    store = RedisReuseStore(redis_client, namespace=NS)
    per_entry = len(Keys(NS).reuse_entry("e", bytes(16))) + ENTRY_BYTES + c.REUSE_ENTRY_OVERHEAD
    redis_client.set(Keys(NS).reuse_max, 10 * per_entry)
    texts = [f"t{i}" for i in range(25)]
    written = store.put("e", text_keys(MODEL, texts), [value_for(t) for t in texts], "w")
    assert written == 10
    assert store.used_bytes() == 10 * per_entry
    assert sum(1 for _ in redis_client.scan_iter(f"{NS}:r:e:*")) == 10
    assert store.put("e", text_keys(MODEL, texts[:3]), [value_for(t) for t in texts[:3]], "w") == 3
    assert store.used_bytes() == 10 * per_entry


# -- the worker side ---------------------------------------------------------------
class CountingEmbedder(HashEmbedder):
    """Hash stand-in that records every text it embedded, thread-safely."""

    def __init__(self, seconds_per_row: float = 0.0) -> None:
        super().__init__(MODEL, seconds_per_row)
        self.texts: list[str] = []
        self._lock = threading.Lock()

    def encode(self, texts):  # type: ignore[no-untyped-def]
        with self._lock:
            self.texts += list(texts)
        return super().encode(texts)


def test_two_workers_on_the_same_texts_at_once_compute_each_text_once(redis_client: redis.Redis) -> None:
    texts = [f"message number {i} " + "word " * (i % 40) for i in range(3000)]
    model = CountingEmbedder(seconds_per_row=0.0002)
    results = {}

    def work(owner: str) -> None:
        reuse = FleetReuse(
            RedisReuseStore(redis.Redis(connection_pool=redis_client.connection_pool), NS),
            MODEL,
            "fp32",
            owner,
            round_texts=128,
        )
        results[owner] = reuse.embed(texts, model)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(model.texts) == len(set(model.texts)) == len(texts)
    calls = [results[w].model_calls for w in ("w0", "w1")]
    assert sum(calls) == len(texts) and min(calls) > 0  # both worked, neither twice
    expected = HashEmbedder(MODEL).encode(texts).embeddings
    for r in results.values():
        cos = np.sum(r.embeddings * expected, axis=1)
        assert cos.min() >= 0.99999
        assert r.reused.sum() + r.model_calls == len(texts)


def test_a_corrupt_entry_is_ignored_recomputed_and_replaced(redis_client: redis.Redis) -> None:
    key = text_key(MODEL, "hello")
    name = Keys(NS).reuse_entry("e", key)
    good = value_for("hello")
    collision = encode_entry("e", np.ones(c.EMBEDDING_DIM) / np.sqrt(c.EMBEDDING_DIM), False, 6)
    for planted in (b"garbage", good[:-2], good[:8] + b"\xff" * (ENTRY_BYTES - 8), collision):
        redis_client.set(name, planted)
        model = CountingEmbedder()
        got = FleetReuse(RedisReuseStore(redis_client, NS), MODEL, "fp32", "w").embed(["hello"], model)
        assert model.texts == ["hello"] and got.model_calls == 1 and not got.reused[0]
        assert np.array_equal(got.embeddings[0], HashEmbedder(MODEL).encode(["hello"]).embeddings[0])
        assert decode_entry(redis_client.get(name) or b"", ["e"], 5) is not None  # replaced by a valid one


def test_a_store_that_is_down_means_computing_not_failing(tmp_path: Path) -> None:
    dead = redis.Redis(port=free_port(), socket_connect_timeout=0.2, socket_timeout=0.2)
    model = CountingEmbedder()
    reuse = FleetReuse(RedisReuseStore(dead, NS), MODEL, "fp32", "w")
    got = reuse.embed(["a", "b"], model)
    assert got.model_calls == 2 and model.texts == ["a", "b"] and reuse.store is None


def test_a_store_that_fails_mid_job_means_computing_the_rest() -> None:
    class Flaky(MemoryReuseStore):
        def claim(self, keys, classes, owner):  # type: ignore[no-untyped-def]
            raise BusUnavailable("gone")

    model = CountingEmbedder()
    got = FleetReuse(Flaky(), MODEL, "fp32", "w").embed([f"t{i}" for i in range(10)], model)
    assert got.model_calls == 10 and sorted(model.texts) == sorted(f"t{i}" for i in range(10))


@pytest.mark.parametrize("threaded", [False, True], ids=["in-turn", "device-thread"])
def test_rounds_on_a_device_thread_give_the_vectors_and_entries_of_rounds_in_turn(
    store: ReuseStore, threaded: bool
) -> None:
    texts = [f"text {i} " + "w " * (i % 7) for i in range(50)]
    plain = FleetReuse(MemoryReuseStore(), MODEL, "fp32", "w", round_texts=8).embed(texts, HashEmbedder(MODEL))
    model = CountingEmbedder(seconds_per_row=0.001)
    with ThreadPoolExecutor(1) as device:
        reuse = FleetReuse(store, MODEL, "fp32", "w", round_texts=8, device=device if threaded else None)
        got = reuse.embed(texts, model)
    assert np.array_equal(got.embeddings, plain.embeddings) and got.model_calls == 50 == len(model.texts)
    again = FleetReuse(store, MODEL, "fp32", "other").embed(texts, model)  # every round was stored, claims dropped
    assert again.reused.all() and again.model_calls == 0 and np.allclose(again.embeddings, plain.embeddings, atol=1e-3)


@pytest.mark.parametrize("threaded", [False, True], ids=["in-turn", "device-thread"])
def test_a_device_failure_releases_the_claims_of_every_round_in_flight(threaded: bool) -> None:
    class Failing(CountingEmbedder):
        def encode(self, texts):  # type: ignore[no-untyped-def]
            if len(self.texts) >= 16:  # the third round fails while the second may be stored
                raise RuntimeError("device lost")
            return super().encode(texts)

    store = MemoryReuseStore()
    texts = [f"t{i:02d}" for i in range(40)]
    with ThreadPoolExecutor(1) as device:
        reuse = FleetReuse(store, MODEL, "fp32", "w", round_texts=8, device=device if threaded else None)
        with pytest.raises(RuntimeError, match="device lost"):
            reuse.embed(texts, Failing())
    assert store.claims == {}, "a failed round's claims must not make other workers wait for them to lapse"
    assert len(store.entries) == 16  # the two rounds computed before the failure were stored


def test_a_claim_whose_holder_died_is_taken_over_once_it_lapses(redis_client: redis.Redis) -> None:
    store = RedisReuseStore(redis_client, NS, claim_ms=300)
    keys = text_keys(MODEL, ["orphan"])
    assert store.claim(keys, ["e"], "dead-worker")[0].mine
    model = CountingEmbedder()
    got = FleetReuse(store, MODEL, "fp32", "alive").embed(["orphan"], model)
    assert model.texts == ["orphan"] and got.model_calls == 1


# -- through the pipeline: outputs and counts --------------------------------------
def write_input(root: Path, rel: str, texts: list[str | None]) -> Job:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"text": pa.array(texts, pa.string())}), path, row_group_size=50)
    return Job.create(rel, fingerprint(path), MODEL)


def run(pipe: EmbedPipeline, job: Job) -> dict[str, int]:
    prepared = pipe.prepare(Delivery(job, job.lane, "1-0"))
    try:
        return pipe.run(prepared, lambda: None).counts.as_dict()
    finally:
        prepared.close()


def embeddings(path: Path) -> np.ndarray:
    return np.stack(pq.read_table(path).column("embedding").to_numpy(zero_copy_only=False))


def test_a_second_file_of_known_texts_costs_no_model_call_and_equals_a_run_without_reuse(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    texts: list[str | None] = [f"text {i % 37}" for i in range(200)] + [None, "", "lol"]
    copy = list(reversed(texts))
    roots = DataRoots.create(tmp_path / "in", tmp_path / "out")
    (tmp_path / "in").mkdir(exist_ok=True)
    a = write_input(roots.input_root, "chains/2024-01/r/a.parquet", texts)
    b = write_input(roots.input_root, "chains/2024-02/r/a.parquet", copy)
    prov = Provenance("python-test", "python", "cpu", "fp32", "0")
    model = CountingEmbedder()
    pipe = EmbedPipeline(roots, model, prov, chunk_rows=64, reuse=RedisReuseStore(redis_client, NS))
    first = run(pipe, a)
    assert first["model_calls"] == 39 and first["rows_reused"] == 0
    second = run(pipe, b)
    assert second["model_calls"] == 0 and second["rows_reused"] == 39
    assert second["rows_deduplicated"] == first["rows_deduplicated"] == 202 - 39
    assert second["rows_exact"] == 202 and second["rows_int8"] == 0
    meta = read_metadata(roots.output_root / b.out)
    assert meta["embedfleet.rows_reused"] == "39" and meta["embedfleet.model_calls"] == "0"
    assert len(model.texts) == 39

    plain_roots = DataRoots.create(tmp_path / "in", tmp_path / "plain")
    plain = EmbedPipeline(plain_roots, HashEmbedder(MODEL), prov, chunk_rows=64)
    run(plain, b)
    reused, computed = embeddings(roots.output_root / b.out), embeddings(plain_roots.output_root / b.out)
    assert reused.shape == computed.shape
    assert np.sum(reused * computed, axis=1).min() >= 0.99999
