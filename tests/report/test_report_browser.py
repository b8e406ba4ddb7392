"""The pages in a real headless Chromium, from ``file://``, after the output directory was copied."""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kling_pipeline.views.report import write_report

from .browser import chromium, require_browser
from .conftest import ATTR_SUBJECT, RATIOS, SCRIPT_SUBJECT, STYLES, SUBJECTS, Sweep

pytestmark = pytest.mark.browser

SCREENSHOT_DIR_ENV = "KLING_PIPELINE_SCREENSHOT_DIR"


@pytest.fixture(scope="module")
def site(gallery: Sweep, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report written into the sweep's output directory, then the whole directory copied to a
    path with a space in it: the index under test is the copy's."""
    write_report(gallery.out_dir, gallery.plan)
    copy = tmp_path_factory.mktemp("site") / "copied run" / "out"
    shutil.copytree(gallery.out_dir, copy)
    return copy / "report.html"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    require_browser()
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


@pytest.fixture
def page(browser: Any, site: Path) -> Any:
    """The grid page, reached from the index by clicking its link."""
    browser.get(site.as_uri())
    follow(browser, "#contents a")
    return browser


def follow(driver: Any, selector: str) -> None:
    """Click the first link ``selector`` finds, and wait for the page it opens."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    link = driver.find_element(By.CSS_SELECTOR, selector)
    href = link.get_attribute("href")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center', inline: 'center'})", link)
    link.click()
    WebDriverWait(driver, 10).until(lambda d: d.current_url == href.split("#")[0] or d.current_url == href)


def wait_for_images(driver: Any) -> list[dict[str, Any]]:
    """Scroll every image into view (they load lazily) until all are complete; return their natural
    sizes and URLs."""
    from selenium.webdriver.support.ui import WebDriverWait

    script = """
        const imgs = [...document.querySelectorAll('img')];
        const pending = imgs.filter(i => !i.complete);
        pending.forEach(i => i.scrollIntoView({block: 'center'}));
        return pending.length === 0 ? imgs.map(i => ({w: i.naturalWidth, src: i.currentSrc})) : null;
    """
    images: list[dict[str, Any]] = WebDriverWait(driver, 10, poll_frequency=0.05).until(
        lambda d: d.execute_script(script))
    return images


def test_every_thumbnail_and_full_image_loads_from_the_copied_directory(page: Any, site: Path) -> None:
    assert page.current_url == (site.parent / "report" / "grid-0001.html").as_uri()
    seen = wait_for_images(page)
    assert len(seen) == page.execute_script("return document.images.length") > 0
    assert all(image["w"] > 0 for image in seen), [i for i in seen if not i["w"]]
    assert all(image["src"].startswith((site.parent / "report" / "thumbs").as_uri() + "/") for image in seen)
    links = page.execute_script("return [...document.querySelectorAll('a.thumb')].map(a => a.href)")
    assert len(links) == len(seen)
    for link in links:  # one click away: the full image, from the copied directory
        assert link.startswith(site.parent.as_uri() + "/") and "/report/" not in link
        page.get(link)
        shown = page.execute_script("return [document.contentType, document.images[0].naturalWidth]")
        assert shown[0] == "image/png" and shown[1] > 0, link


def test_the_grid_shows_three_rows_and_two_columns_per_facet(page: Any) -> None:
    grid = page.execute_script("""
        return [...document.querySelectorAll('section.facet')].map(s => ({id: s.id,
                cols: [...s.querySelectorAll('th.col')].map(t => t.textContent),
                rows: [...s.querySelectorAll('tbody tr')].map(r => r.querySelector('th.row').textContent),
                cells: [...s.querySelectorAll('tbody tr')].map(r => r.querySelectorAll('td.cell').length)}));
    """)
    assert grid == [{"id": f"f-{i}", "cols": list(STYLES), "rows": list(SUBJECTS), "cells": [2, 2, 2]}
                    for i in range(len(RATIOS))]


def test_markup_in_the_recipe_stays_text(page: Any) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        page.switch_to.alert  # noqa: B018 - the property raises when no alert is open
    dom = page.execute_script("""
        return {scripts: document.scripts.length,
                handlers: document.querySelectorAll('[onerror], [onload], [onclick]').length,
                strayImages: [...document.images].filter(i => !i.closest('a.thumb')).length,
                bold: document.querySelectorAll('main b').length,
                rows: [...document.querySelectorAll('#f-0 th.row')].map(t => t.textContent),
                prompt: document.querySelector('#f-0 details.prompt p').textContent};
    """)
    assert dom == {"scripts": 0, "handlers": 0, "strayImages": 0, "bold": 0, "rows": list(SUBJECTS),
                   "prompt": f"A {SCRIPT_SUBJECT} on a table, watercolor style & <b>bold</b>"}
    assert ATTR_SUBJECT in dom["rows"]


def test_the_pages_own_style_passes_its_content_security_policy(browser: Any, site: Path) -> None:
    browser.get_log("browser")  # (drop earlier messages)
    for url in (site.as_uri(), (site.parent / "report" / "grid-0001.html").as_uri(),
                (site.parent / "report" / "problems-0001.html").as_uri()):
        browser.get(url)
        # the page's style applies (a browser's own is 8px and square badges)
        assert browser.execute_script("return [getComputedStyle(document.body).margin, "
                                      "getComputedStyle(document.querySelector('.badge')).borderRadius]") == [
            "0px", "10px"]
    refused = [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
    assert refused == []


def test_links_between_the_pages(browser: Any, site: Path) -> None:
    browser.get(site.as_uri())
    follow(browser, "#problems a")
    assert browser.current_url == (site.parent / "report" / "problems-0001.html").as_uri()
    rows = browser.execute_script("return [...document.querySelectorAll('tbody tr')].map(r => r.className)")
    assert rows and set(rows) <= {"s-failed"}
    follow(browser, "nav.pager a[rel=index]")
    assert browser.current_url == site.as_uri()
    follow(browser, "#contents a")
    follow(browser, "nav.pager a[rel=index]")
    assert browser.current_url == site.as_uri()


def test_without_javascript_everything_still_works(browser: Any, site: Path) -> None:
    browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    try:
        browser.get(site.as_uri())
        assert browser.find_element("id", "contents").is_displayed()
        follow(browser, "#contents a")
        images = wait_for_images(browser)
        assert len(images) == browser.execute_script("return document.images.length") > 0
        assert all(image["w"] > 0 for image in images)
    finally:
        browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": False})


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        kind, body = data[at + 4:at + 8], data[at + 8:at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length:at + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        chunks.append((kind, body))
        at += 12 + length
    return chunks


def test_screenshot_of_a_whole_grid_page(page: Any, tmp_path: Path) -> None:
    wait_for_images(page)
    page.execute_script("window.scrollTo(0, 0)")
    height = page.execute_script("return document.documentElement.scrollHeight")
    page.set_window_size(1280, min(max(height, 600), 4000))
    wait_for_images(page)
    page.execute_script("window.scrollTo(0, 0)")
    shot = tmp_path / "report.png"
    assert page.save_screenshot(str(shot))
    data = shot.read_bytes()
    chunks = png_chunks(data)
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height_px = struct.unpack(">II", chunks[0][1][:8])
    assert width >= 1000 and height_px >= 1000, (width, height_px)
    pixels = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    assert len(set(pixels[: 1 << 20])) > 32  # not a blank page
    assert len(data) > 50_000
    keep = os.environ.get(SCREENSHOT_DIR_ENV)
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "report.png")
