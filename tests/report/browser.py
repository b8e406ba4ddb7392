"""A real headless Chromium driven by Selenium, with Debian's chromedriver (nothing downloaded).

``KLING_PIPELINE_BROWSER_TESTS=required`` turns a missing browser into a failure instead of a skip.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMEDRIVER = Path("/usr/bin/chromedriver")  # Debian's chromium-driver, matching its chromium
CHROMIUM_NAMES = ("chromium", "chromium-browser")
REQUIRED_ENV = "KLING_PIPELINE_BROWSER_TESTS"
CHROME_ARGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1280,900",
)


def chromium_binary() -> Path | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def missing() -> str | None:
    """Why a browser test cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if chromium_binary() is None:
        return "chromium is not installed (apt-get install chromium chromium-driver)"
    if not (CHROMEDRIVER.is_file() and os.access(CHROMEDRIVER, os.X_OK)):
        return f"{CHROMEDRIVER} is missing (apt-get install chromium-driver)"
    return None


def require_browser() -> None:
    """Skip (or, when the environment requires browser tests, fail) without a browser."""
    why = missing()
    if why is None:
        return
    if os.environ.get(REQUIRED_ENV, "").strip().lower() == "required":
        pytest.fail(f"browser tests are required ({REQUIRED_ENV}=required) but {why}", pytrace=False)
    pytest.skip(why)


@contextmanager
def chromium(profile: Path) -> Iterator[Any]:
    """A headless Chromium with a fresh profile in ``profile``; always quit at the end."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = chromium_binary()
    assert binary is not None
    options = webdriver.ChromeOptions()
    options.binary_location = str(binary)
    for arg in (*CHROME_ARGS, f"--user-data-dir={profile}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console messages (CSP refusals)
    # An explicit driver path: Selenium Manager is never asked to download anything.
    service = Service(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.set_page_load_timeout(20)
        yield driver
    finally:
        driver.quit()
