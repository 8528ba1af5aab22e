"""Headless Chromium (Debian's chromium + chromium-driver) driven by selenium, for UI tests."""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager

import pytest

# The flags that work on these machines: no sandbox (root), no GPU, no network side trips.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1600,1200")


def require_chromium() -> tuple[str, str]:
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (browser and driver):
        pytest.skip("needs Debian's chromium and chromium-driver (`make test` installs them)")
    return browser, driver


@contextmanager
def chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = require_chromium()
    profile = tempfile.mkdtemp(prefix="ablab-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    d = webdriver.Chrome(service=Service(driver), options=options)
    d.set_page_load_timeout(120)
    try:
        yield d
    finally:
        d.quit()
        shutil.rmtree(profile, ignore_errors=True)
