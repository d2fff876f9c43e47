"""The dashboard in a real headless Chromium against a live run: workers
appear, progress moves, the charts fill, Pause pressed on the page stops
dispatch and Resume restarts it. Screenshots go to the test's tmp dir
(``EMBEDFLEET_UPDATE_SCREENSHOT=1`` also copies one to docs/dashboard.png)."""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from bus.settings import RedisSettings
from manager.coordinator import Coordinator, CoordinatorOptions
from tests.support.fakes import FakeWorker, make_jobs

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DOCS_PNG = Path(__file__).resolve().parent.parent / "docs" / "dashboard.png"

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)


def wait_until(what: str, cond: Callable[[], Any], timeout_s: float = 20.0) -> Any:
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
        "--window-size=1440,1250",
        "--hide-scrollbars",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def fleet(settings: RedisSettings) -> list[FakeWorker]:
    def fail(job: Any) -> str | None:
        if job.path.endswith(("0017.parquet", "0042.parquet")):
            return f"{job.path}: column 'text' has type int64, expected a string"
        return None

    return [
        FakeWorker(
            settings, "python-mac-studio-4121", kind="python", device="mps", job_s=0.3, rows_per_job=800, fail=fail
        ),
        FakeWorker(
            settings, "python-gpu-box-77", kind="python", device="cuda", job_s=0.15, rows_per_job=900, fail=fail
        ),
        FakeWorker(settings, "rust-node-03-9912", kind="rust", device="cpu", job_s=0.45, rows_per_job=700, fail=fail),
    ]


def resolved(driver: Any) -> int:
    text = driver.find_element("id", "progress-text").text
    m = re.match(r"([\d,]+) / ", text)
    return int(m.group(1).replace(",", "")) if m else -1


def entries_read(client: redis.Redis) -> int:
    (group,) = client.xinfo_groups("eftest:q:default")
    return int(group["entries-read"] or 0)


def test_dashboard_follows_a_live_run_and_pause_stops_dispatch(
    settings: RedisSettings, redis_client: redis.Redis, tmp_path: Path, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    opts = CoordinatorOptions(poll_s=0.1, refresh_s=0.3, state_every_s=0.3, throughput_bucket_s=1.0)
    co = Coordinator(settings, output_root=tmp_path / "out", options=opts)
    api = co.serve_api(port=0)
    workers = [w.start() for w in fleet(settings)]
    runner = threading.Thread(target=co.run, kwargs={"jobs": make_jobs(400)}, daemon=True)
    runner.start()
    try:
        browser.get(api.url)
        rows = wait_until(
            "three workers are listed",
            lambda: (
                len(browser.find_elements(By.CSS_SELECTOR, "#workers tbody tr")) == 3
                and browser.find_elements(By.CSS_SELECTOR, "#workers tbody tr")
            ),
        )
        names = sorted(r.get_attribute("data-worker") for r in rows)
        assert names == ["python-gpu-box-77", "python-mac-studio-4121", "rust-node-03-9912"]
        assert browser.find_element(By.ID, "conn").text == "live"

        first = wait_until("progress is shown", lambda: resolved(browser) > 0 and resolved(browser))
        wait_until("progress moves", lambda: resolved(browser) >= first + 10)
        wait_until("failures are listed", lambda: browser.find_elements(By.CSS_SELECTOR, "#failed tbody tr"))
        wait_until(
            "the throughput chart has a legend per device class",
            lambda: len(browser.find_elements(By.CSS_SELECTOR, "#legend-classes li")) == 3,
            30,
        )
        time.sleep(3)  # a few more points on the charts
        browser.save_screenshot(str(tmp_path / "dashboard-running.png"))

        browser.find_element(By.ID, "btn-pause").click()
        wait_until("the page shows the fleet paused", lambda: browser.find_element(By.ID, "controls").text == "paused")
        assert "paused" in browser.find_element(By.ID, "toast").text
        wait_until("running jobs finish", lambda: all(w.record.state == "paused" for w in workers))
        stats = lambda: {k.decode(): int(v) for k, v in redis_client.hgetall("eftest:stats").items()}  # noqa: E731
        wait_until("the page catches up", lambda: resolved(browser) == stats()["done"] + stats().get("dead", 0))
        before, shown = entries_read(redis_client), resolved(browser)
        time.sleep(1.5)
        assert entries_read(redis_client) == before, "a job was dispatched while paused"
        assert resolved(browser) == shown
        browser.save_screenshot(str(tmp_path / "dashboard-paused.png"))

        browser.find_element(By.ID, "btn-resume").click()
        wait_until("dispatch restarts", lambda: entries_read(redis_client) > before)
        wait_until("the page shows progress again", lambda: resolved(browser) > shown)
        assert not browser.find_element(By.ID, "controls").text
    finally:
        co.stop()
        runner.join(20)
        for w in workers:
            w.stop()
        api.stop()
    assert (tmp_path / "dashboard-running.png").stat().st_size > 20_000
    if os.environ.get("EMBEDFLEET_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(tmp_path / "dashboard-running.png", DOCS_PNG)


def test_dashboard_asks_for_the_token_when_guarded(
    settings: RedisSettings, redis_client: redis.Redis, tmp_path: Path, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    co = Coordinator(settings, output_root=tmp_path / "out", options=CoordinatorOptions(poll_s=0.1))
    api = co.serve_api(port=0, token="browser-token-0123456789")
    try:
        browser.get(api.url)
        assert "unauthorized" in browser.page_source
        browser.get(f"{api.url}/?token=browser-token-0123456789")
        assert browser.current_url.rstrip("/") == api.url  # the token left the address bar
        wait_until("the page is live", lambda: browser.find_element(By.ID, "conn").text == "live")
        wait_until("the run is shown", lambda: browser.find_element(By.ID, "stage").text == "init")
    finally:
        co.journal.close()
        api.stop()
