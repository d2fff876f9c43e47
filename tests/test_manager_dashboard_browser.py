"""The dashboard's gaps, closed, in a real headless Chromium: scan errors in
Failures, the current job's whole path (cut in the middle), stopped workers
counted but not listed, chart rates that match rows ÷ busy seconds, and a
page that says the run ended and keeps its final state once the manager has
exited. Screenshots go to the test's tmp dir."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from bus.redis_transport import RedisTransport, connect
from bus.settings import RedisSettings
from bus.transport import WorkerRecord
from manager.coordinator import Coordinator, CoordinatorOptions
from tests.support.fakes import FakeWorker

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
LONG_PATH = "chains/2024-01/" + "a_subreddit_with_a_long_name_" * 3 + "/RC_2024-01-part-000042.parquet"

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)


def wait_until(what: str, cond: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.1)


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1440,1400",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


class BusyElsewhere:
    """A worker of another run holding a job with a long path (heartbeats only)."""

    def __init__(self, settings: RedisSettings) -> None:
        self.t = RedisTransport(connect(settings), namespace=settings.namespace)
        self.record = WorkerRecord(
            "python-far-away-1", "far", 1, "python", "cuda", "0.1.0", ["gpu"], "working", LONG_PATH
        )
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self.stop.wait(0.5):
            self.t.heartbeat(self.record)

    def __enter__(self) -> BusyElsewhere:
        self.t.heartbeat(self.record)
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(5)


def text(driver: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return "\n".join(e.text for e in driver.find_elements(By.CSS_SELECTOR, css))


def test_dashboard_shows_scan_errors_whole_paths_live_workers_true_rates_and_the_end(
    settings: RedisSettings, redis_client: redis.Redis, tmp_path: Path, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    from corpus.generate import generate_corpus

    data = tmp_path / "data"
    paths = generate_corpus(data, suffixes=1, subreddits=4, files_per_subreddit=16, rows_per_file=10, seed=6)
    (paths[0].parent / "broken.parquet").write_bytes(b"PAR1 not parquet")
    t = RedisTransport(connect(settings), namespace=settings.namespace)
    t.heartbeat(WorkerRecord("rust-retired-9", "old", 9, "rust", "cpu", "0.1.0", ["default"], state="stopped"))

    opts = CoordinatorOptions(poll_s=0.1, refresh_s=0.3, state_every_s=0.3, throughput_bucket_s=1.0)
    co = Coordinator(settings, output_root=data, input_root=data, model="m@0123456789abcdef", options=opts)
    api = co.serve_api(port=0)
    workers = [
        FakeWorker(settings, "python-mac-1", kind="python", device="mps", job_s=0.3, rows_per_job=300),
        FakeWorker(settings, "rust-node-2", kind="rust", device="cpu", job_s=0.25, rows_per_job=400),
    ]
    result: list[Any] = []
    runner = threading.Thread(target=lambda: result.append(co.run()), daemon=True)
    try:
        with BusyElsewhere(settings):
            browser.get(api.url)
            runner.start()
            for w in workers:
                w.start()
            rows = wait_until(
                "the running workers are listed",
                lambda: (
                    len(browser.find_elements(By.CSS_SELECTOR, "#workers tbody tr")) == 3
                    and browser.find_elements(By.CSS_SELECTOR, "#workers tbody tr")
                ),
            )
            names = sorted(r.get_attribute("data-worker") for r in rows)
            assert names == ["python-far-away-1", "python-mac-1", "rust-node-2"]
            assert "1 stopped worker not shown: rust-retired-9" in browser.find_element(By.ID, "workers-stopped").text
            far = browser.find_element(By.CSS_SELECTOR, '#workers tr[data-worker="python-far-away-1"] td.path')
            assert far.get_attribute("title") == LONG_PATH
            assert far.text.startswith("chains/2024-01/a_subreddit") and far.text.endswith("part-000042.parquet")
            assert "…" in far.text

            wait_until("the scan error is in Failures", lambda: "broken.parquet" in text(browser, "#failed tbody"))
            assert "scan" in text(browser, "#failed tbody") and "1 scan error" in text(browser, "#failed-count")
            assert browser.find_element(By.ID, "n-scan-errors").text == "1"
            wait_until("the lanes show work waiting", lambda: text(browser, "#lanes tbody"))
            browser.save_screenshot(str(tmp_path / "dashboard-running.png"))

            runner.join(120)
            assert result and result[0].status == "done"
            wait_until(
                "the page says the run ended", lambda: "The run ended" in browser.find_element(By.ID, "ended").text
            )
            series = httpx.get(f"{api.url}/api/v1/throughput", timeout=10).json()
        api.stop()
        wait_until(
            "the page says the manager exited",
            lambda: "manager exited" in browser.find_element(By.ID, "conn").text,
        )
        assert "The run ended" in browser.find_element(By.ID, "ended").text  # the final state stays
        assert browser.find_element(By.ID, "n-done").text == "64"
        browser.save_screenshot(str(tmp_path / "dashboard-ended.png"))
    finally:
        co.stop()
        runner.join(20) if runner.is_alive() else None
        for w in workers:
            w.stop()
        api.stop()

    # The charts' values are rates: while a worker was busy all along, each
    # bucket is close to its rows ÷ busy seconds (not 0 or a spike).
    busy_rates = co.run_status()["throughput"]["workers"]
    for worker in ("python-mac-1", "rust-node-2"):
        values = [v for v in series["workers"][worker] if v > 0][1:-1]  # whole buckets of steady work
        assert len(values) >= 3, series["workers"][worker]
        assert statistics.median(values) == pytest.approx(busy_rates[worker], rel=0.2), (worker, values)
