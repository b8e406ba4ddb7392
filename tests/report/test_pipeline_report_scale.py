"""A pipeline of 4,001 jobs (1,000 drafts, 2,000 refinements, 1,000 animations, an orphan), from its
manifest alone: per-stage totals, each stage's grid pages within their bound, every job on one of
them, chains pages with every job once, lineage links that lead to the right jobs, thumbnails,
markup as text, and a second report that rewrites only what changed."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kling_pipeline.core.money import format_usd
from kling_pipeline.views.report import PAGE_JOBS, ReportResult, write_report

from .browser import chromium, require_browser
from .chainsite import ChainSite, Resolver, elements, job_of, read_chain_site
from .conftest import SCRIPT_SUBJECT
from .dom import Element
from .site import target
from .synthetic_pipeline import PRICE, VIDEO_PRICE, PJob, SyntheticPipeline, write_pipeline

DRAFTS = 1000
STAGES = ("draft", "refine", "animate")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> SyntheticPipeline:
    return write_pipeline(tmp_path_factory.mktemp("chain-scale") / "out", drafts=DRAFTS)


@pytest.fixture(scope="module")
def first(pipeline: SyntheticPipeline) -> tuple[ReportResult, ChainSite]:
    result = write_report(pipeline.out_dir)
    return result, read_chain_site(result.index)


def test_the_index_has_each_stages_totals(pipeline: SyntheticPipeline, first: tuple[ReportResult, ChainSite]) -> None:
    result, site = first
    assert [tr.get("data-stage") for tr in site.index.root.one("table.stages").one("tbody").all("tr")] == list(STAGES)
    for stage in STAGES:
        jobs = pipeline.stage(stage)
        row = site.stage_row(stage)
        counts = {b.get("data-count"): int(b.text.split()[0]) for b in row.all("span.badge") if "data-count" in b.attrs}
        expected = Counter(j.outcome for j in jobs)
        assert counts == dict(expected), stage
        price = VIDEO_PRICE if stage == "animate" else PRICE
        billed = price * expected["completed"]
        cells = row.all("td")
        assert cells[5].text.startswith(format_usd(billed)), (stage, cells[5].text)
        [total] = [s for s in row.all("span") if s.attrs.get("data-stage-total") == "jobs"]
        assert int(total.text) == len(jobs)
    assert result.summary.totals.jobs == len(pipeline.jobs) == 4 * DRAFTS + 1


def test_every_job_is_on_exactly_one_grid_page_of_its_stage(pipeline: SyntheticPipeline,
                                                            first: tuple[ReportResult, ChainSite]) -> None:
    _, site = first
    for stage in STAGES:
        shown = [job_of(d) for _, d in site.linked(stage)]
        assert sorted(shown) == sorted(j.id for j in pipeline.stage(stage)), stage
        assert len(site.grids[stage]) >= len(shown) // PAGE_JOBS
        for page in site.grids[stage]:
            assert 0 < len(page.root.all("div.job")) <= PAGE_JOBS
            assert len(page.html.encode()) < 400_000, page.path.name


def test_the_chains_pages_show_every_job_once_as_the_trees_it_makes(pipeline: SyntheticPipeline,
                                                                   first: tuple[ReportResult, ChainSite]) -> None:
    _, site = first
    assert sorted((c.get("data-stage"), job_of(c)) for _, c in site.cards()) == sorted(
        (j.stage, j.id) for j in pipeline.jobs)
    for page in site.chains:
        assert 0 < len(page.root.all("div.job")) <= PAGE_JOBS
    trees = {}
    for page in site.chains:
        for section in page.root.all("section.chain"):
            tree = _tree(elements(section.one("div.tree"))[0])
            trees[tree[0]] = tree
    def expected(job: PJob) -> tuple[Any, ...]:
        return (job.id, sorted(expected(k) for k in job.kids))
    roots = [j for j in pipeline.jobs if j.stage == "draft"]
    assert {r.id: trees[r.id] for r in roots} == {r.id: expected(r) for r in roots}
    assert trees["lost-glossy"] == ("lost-glossy", [])  # the orphan: a chain of its own, marked so
    (orphan,) = [s for p in site.chains for s in p.root.all("section.chain.orphan")]
    (lineage,) = orphan.all("p.lineage")  # the job it names, not the file it read (not on disk)
    assert lineage.one("code").text == "lost" and "(not in the manifest)" in lineage.text


def _tree(node: Element) -> tuple[Any, ...]:
    """(job id, [subtrees]) of a ``div.node``."""
    card, *rest = elements(node)
    kids = elements(rest[0]) if rest else []
    return (job_of(card), sorted(_tree(k) for k in kids))


def test_every_link_and_image_of_every_page_leads_somewhere(pipeline: SyntheticPipeline,
                                                            first: tuple[ReportResult, ChainSite]) -> None:
    result, site = first
    assert Resolver().broken([site.index, *site.pages]) == []
    # every image output has its thumbnail, named by its content
    thumbs = sorted(p.name for p in (result.pages_dir / "thumbs").rglob("*.jpg"))
    pngs = [j for j in pipeline.jobs if j.outcome == "completed" and j.stage != "animate"]
    assert thumbs == sorted({f"{hashlib.sha256((pipeline.out_dir / j.path).read_bytes()).hexdigest()}.jpg"
                             for j in pngs})
    assert (result.thumbs.made, result.thumbs.unreadable) == (len(thumbs), 0)


def test_each_job_links_to_the_job_it_was_made_from_and_to_those_made_from_it(
        pipeline: SyntheticPipeline, first: tuple[ReportResult, ChainSite]) -> None:
    _, site = first
    resolve, checked = Resolver(), 0
    for stage in STAGES:
        for page, linked in site.linked(stage):
            job = pipeline.job(stage, job_of(linked))
            lineage = linked.one("p.lineage")
            ups = lineage.all("a.up")
            if job.parent is None:
                assert ups == [] and lineage.all("a.upfile") == []
            else:
                (up,) = ups
                found = resolve.element(page.path, up.get("href"))
                assert found is not None and job_of(found) == job.parent.id
                assert found.get("id") == up.get("href").split("#")[1]
                assert target(page.path, lineage.one("a.upfile").get("href")) == pipeline.out_dir / job.parent.path
                checked += 1
            kids = []
            for a in lineage.all("a.kid"):
                found = resolve.element(page.path, a.get("href"))
                assert found is not None
                kids.append(job_of(found))
            assert sorted(kids) == sorted(k.id for k in job.kids)
            chain = resolve.element(page.path, lineage.one("a.to-chain").get("href"))
            assert chain is not None and "card" in chain.classes and job_of(chain) == job.id
    assert checked == 3 * DRAFTS  # every refinement and animation but the orphan


def test_each_card_of_a_chain_links_to_its_job_on_its_stages_grid(first: tuple[ReportResult, ChainSite]) -> None:
    _, site = first
    resolve = Resolver()
    for page, card in site.cards():
        found = resolve.element(page.path, card.one("a.to-grid").get("href"))
        assert found is not None and job_of(found) == job_of(card)
        assert f"grid-{card.get('data-stage')}-" in card.one("a.to-grid").get("href")


def test_markup_in_values_prompts_and_errors_stays_text(first: tuple[ReportResult, ChainSite]) -> None:
    _, site = first
    for page in [site.index, *site.pages]:
        assert page.root.all("script") == [], page.path.name
        assert "<script>alert" not in page.html and "<b>bold" not in page.html and "<b>provider" not in page.html
    prompts = [s.text for page in site.grids["refine"] for s in page.root.all("summary")]
    assert prompts and all(p.endswith(" & <b>bold</b>") for p in prompts)
    (failed,) = [e for page in site.grids["refine"] for e in page.root.all("p.error-text")]
    assert failed.text == "Kling task failed: <b>provider</b> error"
    headers = [th.text for th in site.grids["draft"][0].root.all("th")]
    assert SCRIPT_SUBJECT in headers


def stamps(directory: Path) -> dict[str, int]:
    return {str(p.relative_to(directory)): p.stat().st_mtime_ns ^ p.stat().st_ino for p in directory.rglob("*.html")}


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    require_browser()
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


@pytest.mark.browser
def test_a_reader_follows_a_chain_from_the_index_to_an_upstream_job(browser: Any,
                                                                    first: tuple[ReportResult, ChainSite]) -> None:
    from selenium.webdriver.common.by import By

    from .test_report_scale import click, loaded_images

    result, site = first
    browser.get(result.index.as_uri())
    click(browser, "#chains a")
    assert browser.current_url == site.chains[0].path.as_uri()
    widths = loaded_images(browser)
    assert len(widths) > 100 and all(w > 0 for w in widths)
    click(browser, ".card[data-stage=animate] a.to-grid")
    assert "/grid-animate-" in browser.current_url and "#j-" in browser.current_url
    here = browser.execute_script("return document.querySelector(location.hash).querySelector('.job').dataset.job")
    click(browser, f".linked[id='{browser.current_url.split('#')[1]}'] a.up")
    assert "/grid-refine-" in browser.current_url
    up = browser.execute_script("return document.querySelector(location.hash).querySelector('.job').dataset.job")
    assert up == here  # the synthetic animation has its refinement's id
    assert browser.find_element(By.CSS_SELECTOR, ":target").is_displayed()
    refused = [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
    assert refused == []


def test_a_second_report_rewrites_only_what_changed(pipeline: SyntheticPipeline,
                                                    first: tuple[ReportResult, ChainSite]) -> None:
    """Runs last in this module: it changes the pipeline."""
    result, site = first
    before = stamps(pipeline.out_dir)
    again = write_report(pipeline.out_dir)
    assert (again.written, again.unchanged, again.removed) == (0, result.pages, 0)
    assert stamps(pipeline.out_dir) == before
    (waiting,) = [j for j in pipeline.jobs if j.outcome == "in_flight"]
    holding = {p.path.name for p in [*site.chains, *site.grids["animate"]]
               if waiting.id in {d.get("data-job") for d in p.root.all("div.job")}}
    assert len(holding) == 2  # its animate grid page, its chains page
    pipeline.finish(waiting)
    third = write_report(pipeline.out_dir)
    after = stamps(pipeline.out_dir)
    changed = {name for name in before if name in after and after[name] != before[name]}
    assert changed == {"report.html", "report/problems-0001.html", *(f"report/{name}" for name in holding)}
    assert set(before) == set(after)
    assert third.written == len(holding) + 1
    assert third.removed == 0


def test_a_chain_longer_than_a_page_goes_on_with_stubs_of_the_jobs_above(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path / "out", drafts=3)
    result = write_report(pipeline.out_dir, page_jobs=3)
    site = read_chain_site(result.index)
    assert Resolver().broken([site.index, *site.pages]) == []
    shown = sorted((c.get("data-stage"), job_of(c)) for _, c in site.cards())
    assert shown == sorted((j.stage, j.id) for j in pipeline.jobs)  # each job in full once
    continued = [s for p in site.chains for s in p.root.all("section.chain") if "(continued)" in s.one("h2").text]
    assert continued  # 4 jobs a chain, 3 a page
    for section in continued:
        stubs = section.all("div.card.stub")
        assert stubs and stubs[0].get("data-stage") == "draft"  # the chain's first job, as a stub
        assert all("id" not in s.attrs for s in stubs)  # the job's anchor is on the page before
    for page in site.chains:
        assert len([c for c in page.root.all("div.card") if "stub" not in c.classes]) <= 3
    for pages in site.grids.values():
        assert all(len(p.root.all("div.job")) <= 3 for p in pages)
