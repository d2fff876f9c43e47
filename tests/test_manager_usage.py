"""Usage deltas, throughput buckets, the ETA, redaction patterns, metrics."""

from __future__ import annotations

import logging

import pytest

from manager.metrics import render
from manager.redaction import Redactor, install_log_redaction, secrets_from_env
from manager.throughput import EtaEstimator, Throughput
from manager.usage import StageUsage, UsageMeter, delta, job_usage


def burn(seconds: float) -> None:
    import time

    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_stage_usage_measures_cpu_and_memory() -> None:
    usage = StageUsage()
    usage.start("embedding")
    burn(0.05)
    used = usage.finish()
    assert used["cpu_s"] >= 0.04 and used["wall_s"] >= used["cpu_s"] * 0.5
    assert used["rss_bytes"] > 10 << 20 and used["peak_rss_bytes"] >= used["rss_bytes"]
    assert usage.stages == {"embedding": used}
    assert usage.finish() == {}  # nothing open


def test_delta_between_samples() -> None:
    meter = UsageMeter()
    a = meter.sample()
    blob = bytearray(50 << 20)  # 50 MiB, touched
    blob[::4096] = b"x" * len(blob[::4096])
    b = meter.sample()
    d = delta(a, b)
    assert d["rss_delta_bytes"] > 40 << 20 and d["rss_bytes"] == b.rss_bytes
    del blob


def test_job_usage_takes_what_the_worker_reports() -> None:
    ev = {"seconds": 1.25, "cpu_s": 2.5, "usage": {"rss_bytes": 123, "gpu_mem_bytes": 7}, "max_rss_bytes": True}
    assert job_usage(ev, 0.0001) == {
        "wall_s": 1.25,
        "cpu_s": 2.5,
        "rss_bytes": 123,
        "gpu_mem_bytes": 7,
        "manager_cpu_s": 0.0001,
    }
    assert job_usage({"usage": "junk"}) == {}


def test_throughput_buckets_per_worker_and_class() -> None:
    t = Throughput(bucket_s=5.0)
    t.add("a", "python/mps", 100, end_s=1000.0)  # no seconds known: counted where it ended
    t.add("b", "python/mps", 50, seconds=0.0, end_s=1001.0)
    t.add("c", "rust/cpu", 30, seconds=2.0, end_s=1009.0)  # ran 1007-1009: inside one bucket
    s = t.series(now_s=1009.0, points=3)
    assert s["t"] == [995.0, 1000.0, 1005.0]
    assert s["workers"]["a"] == [0.0, 20.0, 0.0] and s["classes"]["python/mps"] == [0.0, 30.0, 0.0]
    assert s["classes"]["rust/cpu"] == [0.0, 0.0, 6.0]
    assert s["totals"]["classes"] == {"python/mps": 150, "rust/cpu": 30}
    assert t.busy_rates()["classes"] == {"python/mps": 0.0, "rust/cpu": 15.0}  # no busy time, no rate


def test_old_buckets_are_dropped() -> None:
    t = Throughput(bucket_s=1.0, keep=3)
    for i in range(10):
        t.add("a", "x/y", 1, end_s=float(i))
    assert sum(t.series(now_s=9.5, points=10)["workers"]["a"]) == 3.0
    assert t.series(now_s=9.5)["totals"]["workers"]["a"] == 10


def test_eta_from_the_recent_job_rate() -> None:
    eta = EtaEstimator(window_s=100)
    assert eta.eta_s(10) is None
    eta.observe(0, now=0.0)
    eta.observe(20, now=10.0)
    assert eta.jobs_per_s() == 2.0 and eta.eta_s(30) == 15.0 and eta.eta_s(0) == 0.0


@pytest.mark.parametrize(
    "text",
    [
        "sk-abcdefghijklmnopqrstuvwxyz012345",
        "ghp_abcdefghijklmnopqrstuvwxyz0123",
        "hf_abcdefghijklmnopqrstuvwxyz",
        "AKIAABCDEFGHIJKLMNOP",
        "xoxb-1234567890-abcdef",
        "AIzaSyA-abcdefghijklmnopqrstuvwxyz0123",
    ],
)
def test_api_key_shapes_are_redacted(text: str) -> None:
    assert Redactor(include_env=False).text(f"key {text} used") == "key *** used"


def test_pairs_urls_and_bearer_tokens_are_redacted() -> None:
    r = Redactor(["hunter22"], include_env=False)
    assert r.text("password=abc123 token: xyz789 api_key='k-1'") == "password=*** token: *** api_key='***'"
    assert r.text("redis://u:p4ss@h:1/0 and rediss://:x@h") == "redis://u:***@h:1/0 and rediss://:***@h"
    assert r.text("Authorization: Bearer abcdefgh12345") == "Authorization: Bearer ***"
    assert r.text("the hunter22 secret") == "the *** secret"
    assert r.text("rows=12 seconds=3.5 worker=python-a") == "rows=12 seconds=3.5 worker=python-a"
    assert r.scrub({"hunter22": ["hunter22", 3, None]}) == {"***": ["***", 3, None]}


def test_secret_environment_variables_are_learned() -> None:
    env = {"MY_API_KEY": "abcdef123", "GITHUB_TOKEN": "tok-long", "SHORT_TOKEN": "1", "PATH": "/usr/bin"}
    assert secrets_from_env(env) == ["abcdef123", "tok-long"]


def test_log_records_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("embedfleet.test.redaction")
    filt = install_log_redaction(Redactor(["pw-123456"], include_env=False))
    caplog.handler.addFilter(filt)
    try:
        try:
            raise RuntimeError("failed with pw-123456")
        except RuntimeError:
            logger.exception("connect %s", "redis://:pw-123456@h:1/0")
    finally:
        caplog.handler.removeFilter(filt)
    assert "pw-123456" not in caplog.text and "redis://:***@h" in caplog.text


def test_metrics_text_escapes_labels() -> None:
    text = render(
        {"bus": {"reachable": True, "stats": {}, "controls": {}, "lanes": [], "failed": 0}},
        [
            {
                "worker_id": 'we"ird\\name',
                "kind": "rust",
                "device": "cpu",
                "host": "h\nx",
                "healthy": True,
                "heartbeat_age_s": 1.0,
                "rows_per_s": 2.0,
                "rows_done": 3,
            }
        ],
    )
    assert 'worker="we\\"ird\\\\name"' in text and 'host="h\\nx"' in text
