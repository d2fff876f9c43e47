"""report.html of a finished run in a real headless Chromium, from file://:
no request leaves the file, hovering a point shows its text, a search for a
known phrase highlights its cluster, a click opens a cluster with its topic
tree beside the map. The screenshots stay in the test's tmp dir."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from clusterer.cli import main
from clusterer.synthetic import PlantedSpec, planted, texts_for, vocabulary, write_run

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

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
        "--window-size=1500,1100",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def requested_urls(driver: Any) -> list[str]:
    """Every URL the page asked for, from Chromium's DevTools network log."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def finished_run(root: Path) -> tuple[str, int]:
    """A clustered run; returns a word of one planted topic and the cluster holding most of that topic."""
    x, labels = planted(PlantedSpec(n=3000, clusters=6, seed=7, noise_share=0.03))
    texts = texts_for(labels, 7)
    write_run(root, x, texts, files=3)
    args = ["--data-root", str(root), "--reducer", "pca", "--min-cluster-size", "60", "--map-points", "2000", "-q"]
    assert main(args) == 0
    word = vocabulary(6, seed=7)[2][0]
    df = pl.read_parquet(root / "clusters" / "clusters.parquet")
    truth = labels[df["id"].str.slice(1).cast(pl.Int64).to_numpy()]
    found = df["cluster"].to_numpy()
    cluster = int(np.bincount(found[(truth == 2) & (found >= 0)]).argmax())
    return word, cluster


def test_report_explores_offline_in_a_browser(tmp_path: Path, browser: Any) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    word, cluster = finished_run(tmp_path)
    page = tmp_path / "clusters" / "report.html"
    url = page.as_uri()
    browser.get(url)
    wait_until("the map is drawn", lambda: browser.execute_script("return document.body.dataset.mapReady"))

    urls = requested_urls(browser)
    assert urls and all(u == url for u in urls), f"requests left the file: {sorted(set(urls) - {url})}"
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    assert browser.execute_script("return window.reportState.labels") >= 1, "clusters named on the map"

    # Hover: the point's text appears.
    canvas = browser.find_element(By.ID, "map")
    i = browser.execute_script(
        "const d = JSON.parse(document.getElementById('report-data').textContent).points;"
        "return d.c.findIndex(c => c === arguments[0]);",
        cluster,
    )
    x, y = browser.execute_script("return window.reportMap.screenOf(arguments[0])", i)
    size = canvas.size
    offset = (int(x - size["width"] / 2), int(y - size["height"] / 2))
    ActionChains(browser).move_to_element_with_offset(canvas, *offset).perform()
    tip = browser.find_element(By.ID, "tip")
    wait_until("the hover text shows", lambda: tip.is_displayed() and tip.text)
    hovered = browser.execute_script("return window.reportState.hover")
    hovered_text = browser.execute_script(
        "return JSON.parse(document.getElementById('report-data').textContent).points.t[arguments[0]]", hovered
    )
    assert hovered >= 0 and hovered_text and hovered_text in tip.text, "the tooltip shows the hovered point's text"
    browser.save_screenshot(str(tmp_path / "report-hover.png"))

    # Search: the known phrase highlights its cluster.
    box = browser.find_element(By.ID, "search")
    box.send_keys(word)
    wait_until(
        "the search lists its clusters",
        lambda: browser.find_elements(By.CSS_SELECTOR, f'#hits button.hit[data-cluster="{cluster}"]'),
    )
    first = browser.find_element(By.CSS_SELECTOR, "#hits button.hit")
    assert first.get_attribute("data-cluster") == str(cluster), "the cluster with most matches comes first"
    assert cluster in browser.execute_script("return [...window.reportState.matchClusters]")
    assert browser.find_elements(By.CSS_SELECTOR, f'.tree li.leaf.hit[data-cluster="{cluster}"]')
    assert "texts in" in browser.find_element(By.ID, "search-status").text
    browser.save_screenshot(str(tmp_path / "report-search.png"))

    # Click a hit: the cluster opens beside the map with its sizes, keywords, exemplars and tree place.
    first.click()
    detail = browser.find_element(By.ID, "detail")
    wait_until("the cluster opens", lambda: f"Cluster {cluster}" in detail.text)
    assert "distinct texts" in detail.text and "Theme" in detail.text and "Topic" in detail.text
    assert detail.find_elements(By.TAG_NAME, "blockquote"), "exemplars"
    assert browser.find_elements(By.CSS_SELECTOR, f'.tree li.leaf.sel[data-cluster="{cluster}"]')
    browser.save_screenshot(str(tmp_path / "report-cluster.png"))
    assert (tmp_path / "report-cluster.png").stat().st_size > 10_000
