"""The worker-parity vectors both suites load (``docs/parity.md``; the Rust
twin is ``rust/worker/tests/it/parity.rs``): event types and their fields,
cleaning counts, the batch cut rule and the retry backoff."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bus import constants as c
from bus.memory import MemoryTransport
from tests.support.vectors import load
from workers import st_embedder
from workers.cleaning import Counts, clean
from workers.embedder import HashEmbedder
from workers.paths import DataRoots
from workers.pipeline import EmbedPipeline
from workers.runtime import Worker, WorkerConfig, backoff_ms
from workers.st_embedder import plan_batches
from workers.testing import enqueue_all, jobs_for, memory_backlog
from workers.writer import Provenance

MODEL = "all-MiniLM-L6-v2@test"


# -- events ---------------------------------------------------------------------


def test_event_type_constants_match_the_vector() -> None:
    v = load("events.json")
    assert set(c.WORKER_EVENT_TYPES) == set(v["worker_types"])
    assert c.EVENT_OPERATOR_ACTION in v["manager_types"]
    assert v["v"] == c.EVENT_VERSION
    assert set(Counts().as_dict()) == set(v["counts"]), "the `counts` of job events"


def _burst_worker_events(tmp: Path) -> list[dict[str, Any]]:
    roots = DataRoots.create(tmp / "in", tmp / "out")
    good = roots.input_root / "chains/s/sub/good.parquet"
    good.parent.mkdir(parents=True)
    pq.write_table(pa.table({"text": ["a", "b", "a"]}), good)
    bad = good.with_name("broken.parquet")
    bad.write_bytes(b"not parquet")
    bus = MemoryTransport(lease_ms=60_000)
    enqueue_all(bus, jobs_for(roots.input_root, [good, bad], MODEL))
    pipeline = EmbedPipeline(roots, HashEmbedder(MODEL), Provenance("w", "python", "cpu", "fp32", "0"))
    cfg = WorkerConfig(burst=True, handle_signals=False, block_ms=20, controls_every_s=0.02)
    assert Worker(bus, pipeline, cfg, backlog=memory_backlog(bus)).run() == 0
    return list(bus.events)


def test_events_a_worker_sends_carry_the_fields_of_the_vector(tmp_path: Path) -> None:
    v = load("events.json")
    sent = _burst_worker_events(tmp_path)
    assert {e["type"] for e in sent} == {
        c.EVENT_WORKER_STARTED,
        c.EVENT_JOB_DONE,
        c.EVENT_JOB_DEAD,
        c.EVENT_WORKER_STOPPED,
    }
    for e in sent:
        spec = v["worker_types"].get(e["type"])
        assert spec is not None, f"event type {e['type']} is not in events.json"
        required = set(v["common"]) | set(spec["fields"]) | (set(v["about_job"]) if spec["about_job"] else set())
        assert required <= set(e), f"{e} lacks {required - set(e)}"
        assert set(e) - required <= set(spec["optional"]), f"{e} has fields outside events.json"


# -- cleaning -------------------------------------------------------------------


def _expand(spec: dict[str, Any]) -> str | bytes | None:
    n = int(spec.get("repeat", 1))
    if spec.get("null"):
        return None
    if "bytes_hex" in spec:
        return bytes.fromhex(spec["bytes_hex"]) * n
    return str(spec["text"]) * n


@pytest.mark.parametrize("case", load("cleaning.json"), ids=lambda c: c["name"][:40])
def test_cleaning_counts_match_the_vector(case: dict[str, Any]) -> None:
    got = clean([_expand(cell) for cell in case["cells"]])
    assert got.positions.tolist() == case["positions"]
    assert got.texts == [_expand(t) for t in case["texts"]]
    counts = got.counts.as_dict()
    assert {k: counts[k] for k in case["counts"]} == case["counts"]


# -- the batch cut rule ---------------------------------------------------------


def test_batch_rule_constants_match_the_vector() -> None:
    v = load("batching.json")
    assert (st_embedder.MAX_PADDING, st_embedder.PADDING_SLACK) == (v["max_padding"], v["padding_slack"])


@pytest.mark.parametrize("case", load("batching.json")["cases"], ids=lambda c: c["name"][:40])
def test_the_batch_cut_rule_matches_the_vector(case: dict[str, Any]) -> None:
    budget = int(case["budget"])
    got = [np.asarray(b).tolist() for b in plan_batches(case["lengths"], case["max_batch"], lambda _seq: budget)]
    assert got == case["batches"]


# -- retry backoff --------------------------------------------------------------


def test_retry_backoff_matches_the_vector() -> None:
    v = load("backoff.json")
    assert (v["defaults"]["base_ms"], v["defaults"]["max_ms"]) == (c.DEFAULT_RETRY_BASE_MS, c.DEFAULT_RETRY_MAX_MS)
    for config in v["configs"]:
        for case in config["cases"]:
            delay = backoff_ms(case["attempts"], config["base_ms"], config["max_ms"])
            assert case["min_ms"] <= delay <= case["max_ms"], case
