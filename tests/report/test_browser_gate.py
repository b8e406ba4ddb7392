"""Browser tests skip without Chromium, unless the environment requires them: then they fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import browser


@pytest.fixture
def no_driver(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    missing = tmp_path / "chromedriver"
    monkeypatch.setattr(browser, "CHROMEDRIVER", missing)
    return missing


def test_a_missing_browser_skips_the_browser_tests(no_driver: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(browser.REQUIRED_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception) as info:
        browser.require_browser()
    assert str(info.value) in (f"{no_driver} is missing (apt-get install chromium-driver)",
                               "chromium is not installed (apt-get install chromium chromium-driver)",
                               "selenium is not installed (pip install -e '.[test]')")


def test_a_missing_browser_fails_when_browser_tests_are_required(no_driver: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(browser.REQUIRED_ENV, "required")
    with pytest.raises(pytest.fail.Exception, match=r"^browser tests are required "
                       r"\(KLING_PIPELINE_BROWSER_TESTS=required\) but .*(missing|not installed)"):
        browser.require_browser()
