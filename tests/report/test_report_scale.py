"""A 20,000-image sweep: pages stay within their bound, every job and image is on exactly one page,
thumbnails load in a real headless Chromium, links work, markup stays text, and a second report
rewrites only what changed."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kling_pipeline.cli import main
from kling_pipeline.views.report import PAGE_JOBS, ReportResult, write_report

from .browser import chromium, require_browser
from .site import Site, read_site, target
from .synthetic import BROKEN, RATIOS, STYLES, SUBJECTS, Synthetic, write_sweep

GRID_PAGE_BYTES = 300_000  # for this sweep's prompts (prompt text is what varies)
INDEX_BYTES = 100_000


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Synthetic:
    return write_sweep(tmp_path_factory.mktemp("scale") / "out")


@pytest.fixture(scope="module")
def first(sweep: Synthetic) -> tuple[ReportResult, Site]:
    result = write_report(sweep.out_dir)
    return result, read_site(result.index)


def test_the_report_of_20000_jobs_in_numbers(sweep: Synthetic, first: tuple[ReportResult, Site]) -> None:
    result, site = first
    done = len(sweep.completed())
    assert (result.summary.totals.jobs, result.summary.totals.images) == (20_000, done)
    assert (result.thumbs.made, result.thumbs.reused, result.thumbs.unreadable) == (done - 1, 0, 1)
    assert result.pages == len(site.pages) == result.written
    # 10 ratios x 2 column blocks (12 + 8 styles) x 100 subjects; pages fill up with the next rows
    assert 20_000 // PAGE_JOBS <= len(site.grid) <= 110
    assert [p.path.name for p in site.problems] == ["problems-0001.html", "problems-0002.html"]


def test_every_page_stays_small(first: tuple[ReportResult, Site]) -> None:
    _, site = first
    assert len(site.index.html.encode()) < INDEX_BYTES
    for page in site.grid:
        assert 0 < len(page.root.all("div.job")) <= PAGE_JOBS
        assert len(page.html.encode()) < GRID_PAGE_BYTES, page.path.name
    assert all(len(p.root.one("tbody").all("tr")) <= 500 for p in site.problems)


def test_every_job_is_on_exactly_one_grid_page_as_the_index_says(sweep: Synthetic,
                                                                first: tuple[ReportResult, Site]) -> None:
    _, site = first
    ids = [d.get("data-job") for d in site.jobs()]
    assert sorted(ids) == sorted(j.id for j in sweep.jobs)
    notes = [li.one("span.note").text for li in site.index.root.one("ol.pages").all("li")]
    assert notes == [f"{len(p.root.all('div.job'))} jobs · {len(p.root.all('a.thumb') + p.root.all('a.unreadable'))} "
                     "images" for p in site.grid]


def test_thumbnails_are_named_by_the_images_content(sweep: Synthetic, first: tuple[ReportResult, Site]) -> None:
    result, site = first
    thumbs = sorted(p.name for p in (result.pages_dir / "thumbs").rglob("*.jpg"))
    expected = sorted(f"{hashlib.sha256((sweep.out_dir / j.path).read_bytes()).hexdigest()}.jpg"
                      for j in sweep.completed() if j.index != BROKEN)
    assert thumbs == expected
    broken = site.job(sweep.job(BROKEN).id).one("a.placeholder")
    assert broken.text == "no preview: not an image the report can preview (PNG, JPEG or WebP)"
    assert target(site.grid[0].path, broken.get("href")) == sweep.out_dir / sweep.job(BROKEN).path


def stamps(directory: Path) -> dict[str, int]:
    return {str(p.relative_to(directory)): p.stat().st_mtime_ns ^ p.stat().st_ino
            for p in directory.rglob("*.html")}


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    require_browser()
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


def loaded_images(driver: Any) -> list[int]:
    """Scroll each image of the page into view (they load lazily); their natural widths once all are
    complete."""
    from selenium.webdriver.support.ui import WebDriverWait

    script = """
        const imgs = [...document.images];
        const pending = imgs.filter(i => !i.complete);
        pending.slice(0, 24).forEach(i => i.scrollIntoView({block: 'center'}));
        return pending.length === 0 ? imgs.map(i => i.naturalWidth) : null;
    """
    widths: list[int] = WebDriverWait(driver, 20, poll_frequency=0.02).until(lambda d: d.execute_script(script))
    return widths


def click(driver: Any, selector: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    link = driver.find_element(By.CSS_SELECTOR, selector)
    href = link.get_attribute("href")
    # in the middle of the screen, out from under the sticky row headers, as a reader would scroll it
    driver.execute_script("arguments[0].scrollIntoView({block: 'center', inline: 'center'})", link)
    link.click()
    WebDriverWait(driver, 10).until(lambda d: d.current_url == href)


@pytest.mark.browser
def test_pages_and_every_thumbnail_load_in_a_browser(browser: Any, first: tuple[ReportResult, Site]) -> None:
    result, site = first
    browser.get(result.index.as_uri())
    assert browser.execute_script("return document.querySelectorAll('#contents a').length") == len(site.grid)
    click(browser, "#contents a")
    assert browser.current_url == site.grid[0].path.as_uri()
    widths = loaded_images(browser)
    assert len(widths) == len(site.grid[0].root.all("img")) > 100
    assert all(w > 0 for w in widths)
    assert browser.execute_script("return [...document.querySelectorAll('th.row')].map(t => t.textContent)")[:2] == [
        SUBJECTS[0], SUBJECTS[1]]  # '<script>alert(1)</script>' as text
    assert browser.execute_script("return document.scripts.length") == 0
    click(browser, "a[rel=next]")
    assert browser.current_url == site.grid[1].path.as_uri()
    assert all(w > 0 for w in loaded_images(browser))
    click(browser, "a.thumb")  # the full image, one click away
    assert browser.execute_script("return [document.contentType, document.images[0].naturalWidth]") == [
        "image/png", 4]


@pytest.mark.browser
def test_the_facet_jump_opens_the_page_of_the_chosen_facet(browser: Any, first: tuple[ReportResult, Site]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    result, site = first
    browser.get(result.index.as_uri())
    Select(browser.find_element(By.CSS_SELECTOR, "#facet-jump select")).select_by_visible_text(RATIOS[5])
    browser.find_element(By.ID, "facet-open").click()
    WebDriverWait(browser, 10).until(lambda d: "#f-5" in d.current_url)
    (page, *_) = [p for p in site.grid if any(s.get("id") == "f-5" for s in p.root.all("section.facet"))]
    assert browser.current_url == page.path.as_uri() + "#f-5"
    heading = browser.execute_script("return document.getElementById('f-5').querySelector('h2').textContent")
    assert heading.startswith(f"ratio = {RATIOS[5]} columns {STYLES[0]} \u2013 {STYLES[11]}")
    refused = [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
    assert refused == []


@pytest.mark.browser
def test_without_javascript_the_index_lists_the_pages(browser: Any, first: tuple[ReportResult, Site]) -> None:
    result, site = first
    browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    try:
        browser.get(result.index.as_uri())
        assert not browser.find_element("id", "facet-jump").is_displayed()
        click(browser, f"#contents li:nth-child({len(site.grid)}) a")
        assert browser.current_url == site.grid[-1].path.as_uri()
        assert all(w > 0 for w in loaded_images(browser))
    finally:
        browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": False})


def test_a_second_report_rewrites_only_what_changed(sweep: Synthetic, first: tuple[ReportResult, Site]) -> None:
    """Runs last in this module: it changes the sweep."""
    result, site = first
    out = io.StringIO()
    before = stamps(sweep.out_dir)
    assert main(["report", str(sweep.out_dir)], out=out, err=io.StringIO()) == 0
    assert out.getvalue().splitlines()[1] == (
        f"  {result.pages} pages (0 written, {result.pages} unchanged); thumbnails: 0 made, "
        f"{result.thumbs.made} reused, 1 unreadable")
    assert stamps(sweep.out_dir) == before
    # the 200 jobs in flight complete: only the pages that show them change
    waiting = {job.id for job in sweep.in_flight}
    holding = {p.path.name for p in site.grid if waiting & {d.get("data-job") for d in p.root.all("div.job")}}
    assert 0 < len(holding) < len(site.grid) // 5
    sweep.finish_in_flight()
    again = write_report(sweep.out_dir)
    after = stamps(sweep.out_dir)
    changed = {name for name in before if name in after and after[name] != before[name]}
    assert changed == {"report.html", *(f"report/{name}" for name in holding), "report/problems-0001.html"}
    assert set(before) - set(after) == {"report/problems-0002.html"}  # 600 problems, now 400: one page
    assert (again.written, again.removed, again.thumbs.made) == (len(holding) + 1, 1, len(sweep.in_flight))
