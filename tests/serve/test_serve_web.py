"""The web page at / in headless Debian Chromium (Selenium + /usr/bin/chromedriver): type, click, read labels."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from llmneo.inference import Predictor
from llmneo.serve.app import create_app
from llmneo.serve.launch import serve_in_thread
from llmneo.serve.settings import ServeSettings

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def base_url(tiny_model_dir: Path) -> Iterator[str]:
    with serve_in_thread(create_app(ServeSettings(model=str(tiny_model_dir)), Predictor.load(tiny_model_dir))) as url:
        yield url


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    assert Path(CHROMEDRIVER).is_file(), "install Debian's chromium and chromium-driver packages"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1000,700", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_type_click_and_see_labels(base_url: str, browser: webdriver.Chrome, tmp_path: Path) -> None:
    texts = ["An absolute delight from start to finish.", "Dull, tedious and far too long. 😴"]
    expected = httpx.post(f"{base_url}/predict", json={"texts": texts}).json()["results"]
    browser.get(base_url + "/")
    wait = WebDriverWait(browser, 30)
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "model"), "tiny"))
    box = browser.find_element(By.ID, "texts")
    box.clear()
    box.send_keys(texts[0] + "\n\n" + texts[1])  # the blank line is skipped, not sent
    browser.find_element(By.ID, "predict").click()
    rows = wait.until(lambda driver: driver.find_elements(By.CSS_SELECTOR, "tr.result") or None)
    assert [row.find_element(By.CSS_SELECTOR, "td.text").text for row in rows] == texts
    labels = [row.find_element(By.CSS_SELECTOR, "td.label").text for row in rows]
    assert labels == [result["label"] for result in expected]
    widths = [row.find_element(By.CSS_SELECTOR, ".fill").get_attribute("style") for row in rows]
    assert all("width" in width for width in widths)
    assert browser.find_element(By.ID, "error").text == ""
    screenshot = tmp_path / "web-page.png"
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_page_shows_the_servers_error(base_url: str, browser: webdriver.Chrome) -> None:
    browser.get(base_url + "/")
    box = WebDriverWait(browser, 30).until(expected_conditions.presence_of_element_located((By.ID, "texts")))
    box.clear()
    box.send_keys("x" * 2001)
    browser.find_element(By.ID, "predict").click()
    WebDriverWait(browser, 30).until(expected_conditions.text_to_be_present_in_element((By.ID, "error"), "2000"))
    assert "body.texts.0" in browser.find_element(By.ID, "error").text


def test_docs_render_offline(base_url: str, browser: webdriver.Chrome) -> None:
    browser.get(base_url + "/docs")
    paths = WebDriverWait(browser, 30).until(
        lambda driver: driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path") or None
    )
    assert {"/predict", "/health", "/info", "/metrics"} <= {path.text.replace("\u200b", "") for path in paths}
