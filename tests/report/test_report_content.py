"""The page written for a real sweep: grid shape, statuses, totals, escaping, relative links."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import urllib.parse
from pathlib import Path

import pytest

from kling_pipeline.core.money import format_usd
from kling_pipeline.views.report import STATUS_TEXT, collect, render_report, write_report
from kling_pipeline.views.report.collect import report_status

from .conftest import ATTR_SUBJECT, RATIOS, SCRIPT_SUBJECT, STYLES, SUBJECTS, Sweep
from .dom import Element, parse


@pytest.fixture(scope="module")
def page(gallery: Sweep, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The report of the gallery sweep, written by ``write_report`` into its output directory."""
    path = write_report(gallery.out_dir, gallery.plan)
    return path, path.read_text(encoding="utf-8")


def expected_status(gallery: Sweep, key: str) -> str:
    job = gallery.state.jobs.get(key)
    return report_status(job.state if job is not None else "none")


def refs(root: Element) -> list[str]:
    return [e.attrs[a] or "" for e in root.iter() for a in ("src", "href") if a in e.attrs]


def image_refs(root: Element) -> list[str]:
    return [e.get("src") for e in root.all("img")]


def test_the_report_is_written_into_the_output_directory(gallery: Sweep, page: tuple[Path, str]) -> None:
    path, html = page
    assert path == gallery.out_dir / "report.html"
    assert html.startswith("<!doctype html>\n")
    assert not list(gallery.out_dir.glob(".report.html.*"))  # the temp file was renamed


def test_grid_has_subject_rows_style_columns_and_one_facet_per_ratio(page: tuple[Path, str]) -> None:
    root = parse(page[1])
    facets = root.all("section.facet")
    assert [f.one("h2").text.split(" ")[:3] for f in facets] == [["ratio", "=", r] for r in RATIOS]
    for facet in facets:
        assert [th.text for th in facet.all("th.col")] == list(STYLES)
        assert [th.text for th in facet.all("th.row")] == list(SUBJECTS)
        assert all(len(tr.all("td.cell")) == len(STYLES) for tr in facet.one("tbody").all("tr"))
    assert [o.text for o in root.one("nav.facet-controls").all("option")] == ["all", *RATIOS]


def test_every_job_is_in_its_cell_with_the_manifests_status(gallery: Sweep, page: tuple[Path, str]) -> None:
    root = parse(page[1])
    facets = root.all("section.facet")
    for job in gallery.plan.jobs:
        labels = job.combination.labels
        facet = facets[RATIOS.index(labels["ratio"])]
        row = facet.one("tbody").all("tr")[SUBJECTS.index(labels["subject"])]
        cell = row.all("td.cell")[STYLES.index(labels["style"])]
        found = [d for d in cell.all("div.job") if d.attrs.get("data-job") == job.id]
        assert len(found) == 1, job.id
        status = expected_status(gallery, job.key)
        assert found[0].get("data-status") == status
        assert found[0].one("span.badge").text == STATUS_TEXT[status]
    # both samples of a combination sit together in one cell, in repeat order
    for cell in root.all("td.cell"):
        assert [d.get("data-job")[-2:] for d in cell.all("div.job")] == ["r0", "r1"]


def test_cells_show_images_errors_and_costs_as_the_manifest_says(gallery: Sweep, page: tuple[Path, str]) -> None:
    by_id = {d.get("data-job"): d for d in parse(page[1]).all("div.job")}
    for job in gallery.plan.jobs:
        div, state = by_id[job.id], gallery.state.jobs.get(job.key)
        if state is not None and state.state == "completed":
            shown = [urllib.parse.unquote(img.get("src")) for img in div.all("img")]
            assert state.done is not None
            assert shown == ["./" + o.path for o in state.done.outputs]
            assert [a.get("href") for a in div.all("a.thumb")] == [img.get("src") for img in div.all("img")]
            assert div.one("span.cost").text == format_usd(state.billed) == "$0.028"
        elif state is not None and state.state == "failed":
            assert not div.all("img")
            assert div.one("span.placeholder").text == "failed"
            assert div.one("p.error-text").text == state.error
            assert div.one("span.cost").text == "$0.00"
        else:
            assert state is None
            assert not div.all("img")
            assert div.one("span.placeholder").text == "not run"
            assert div.one("span.cost").text == f"{format_usd(job.cost)} planned"


def test_each_cell_shows_its_rendered_prompt_as_text(gallery: Sweep, page: tuple[Path, str]) -> None:
    root = parse(page[1])
    prompts = sorted(p.one("p").text for p in root.all("details.prompt"))
    # one per cell (its samples share it)
    expected = sorted(gallery.plan.render(j).request["prompt"] for j in gallery.plan.jobs if j.repeat_index == 0)
    assert prompts == expected
    assert f"A {SCRIPT_SUBJECT} on a table, watercolor style & <b>bold</b>" in prompts


def test_totals_match_the_manifest(gallery: Sweep, page: tuple[Path, str]) -> None:
    root = parse(page[1])
    totals = {e.get("data-total"): e.text for e in root.one("dl.totals").iter() if "data-total" in e.attrs}
    counts = {e.get("data-count"): e.text for e in root.one("dl.totals").iter() if "data-count" in e.attrs}
    statuses = [expected_status(gallery, j.key) for j in gallery.plan.jobs]
    completed = [gallery.state.jobs[j.key] for j in gallery.plan.jobs if expected_status(gallery, j.key) == "completed"]
    assert totals == {
        "jobs": str(len(gallery.plan.jobs)),
        "images": str(sum(len(j.done.outputs) for j in completed if j.done is not None)),
        "planned": format_usd(gallery.plan.total_cost),
        "billed": format_usd(gallery.state.settled),
        "cap": "$0.40",
    }
    assert counts == {s: f"{statuses.count(s)} {STATUS_TEXT[s]}" for s in set(statuses)}
    assert gallery.state.settled == 2_800_000 * len(completed)


def test_problem_list_names_every_failed_job_with_its_error(gallery: Sweep, page: tuple[Path, str]) -> None:
    rows = parse(page[1]).one("section.problems").one("tbody").all("tr")
    failed = [j for j in gallery.plan.jobs if expected_status(gallery, j.key) == "failed"]
    assert [(r.all("code")[0].text, r.one("td.error-text").text) for r in rows] == [
        (j.id, gallery.state.jobs[j.key].error) for j in failed]


def test_markup_in_values_and_prompts_is_text_never_markup(page: tuple[Path, str]) -> None:
    html = page[1]
    root = parse(html)
    assert html.count("<script") == 1  # the page's own script only
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>bold" not in html
    for element in root.iter():
        assert not any(name.startswith("on") for name in element.attrs), element
    assert {e.tag for e in root.iter()} <= {
        "#document", "html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "p", "code", "dl",
        "div", "dt", "dd", "span", "b", "nav", "label", "select", "option", "a", "main", "section", "table",
        "thead", "tbody", "tr", "th", "td", "img", "details", "summary", "footer", "script"}
    assert [i.get("src") for i in root.all("img") if not i.get("src").startswith("./")] == []
    assert root.all("th.row")[0].text == SCRIPT_SUBJECT and root.all("th.row")[2].text == ATTR_SUBJECT
    titles = [i.get("title") for i in root.all("img")]
    assert any(SCRIPT_SUBJECT in t for t in titles) and any(ATTR_SUBJECT in t for t in titles)


def test_only_the_pages_own_style_and_script_may_run(page: tuple[Path, str]) -> None:
    root = parse(page[1])
    csp = next(m.get("content") for m in root.all("meta") if m.attrs.get("http-equiv") == "Content-Security-Policy")

    def digest(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    assert f"script-src {digest(root.one('script').text)};" in csp
    assert f"style-src {digest(root.one('style').text)};" in csp
    assert csp.startswith("default-src 'none';")


def test_no_external_urls(page: tuple[Path, str]) -> None:
    html = page[1]
    root = parse(html)
    assert not root.all("link")
    for ref in refs(root):
        assert ref.startswith(("./", "../", "#")), ref
    assert "@import" not in html and "url(" not in root.one("style").text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)


def test_every_image_link_is_relative_and_points_at_the_file(gallery: Sweep, page: tuple[Path, str]) -> None:
    root = parse(page[1])
    targets = {urllib.parse.unquote(r) for r in refs(root) if not r.startswith("#")}
    recorded = {"./" + o.path for j in gallery.state.jobs.values() if j.state == "completed" and j.done is not None
                for o in j.done.outputs}
    assert targets == recorded
    assert any(" #" in t and ":" in t for t in targets)  # the awkward names were exercised
    for target in targets:
        assert (gallery.out_dir / target).is_file()


def test_a_copied_output_directory_keeps_every_link_valid(gallery: Sweep, page: tuple[Path, str],
                                                         tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere" / "copied run"
    shutil.copytree(gallery.out_dir, copy)
    html = (copy / "report.html").read_text(encoding="utf-8")
    links = [r for r in refs(parse(html)) if not r.startswith("#")]
    assert not [link for link in links if str(gallery.out_dir.parent.name) in urllib.parse.unquote(link)]
    assert len(links) == 2 * len(image_refs(parse(html))) > 0
    for link in links:
        assert (copy / urllib.parse.unquote(link)).is_file(), link


def test_a_page_written_elsewhere_links_back_into_the_output_directory(gallery: Sweep, tmp_path: Path) -> None:
    target = tmp_path / "pages" / "gallery.html"
    path = write_report(gallery.out_dir, gallery.plan, output=target)
    assert path == target
    links = image_refs(parse(path.read_text(encoding="utf-8")))
    assert links and all(link.startswith("../") for link in links)
    for link in links:
        resolved = (target.parent / urllib.parse.unquote(link)).resolve()
        assert resolved.is_file() and resolved.is_relative_to(gallery.out_dir.resolve())
    assert os.path.commonpath([gallery.out_dir, target]) != str(gallery.out_dir)


def test_any_two_axes_make_the_grid(gallery: Sweep) -> None:
    data = collect(gallery.out_dir, gallery.plan)
    root = parse(render_report(data, rows="ratio", cols="subject", base=gallery.out_dir))
    facets = root.all("section.facet")
    assert [f.one("h2").one("span.v").text for f in facets] == list(STYLES)
    assert [th.text for th in facets[0].all("th.col")] == list(SUBJECTS)
    assert [th.text for th in facets[0].all("th.row")] == list(RATIOS)
    # one axis given: the other defaults to the first remaining axis with several values
    root = parse(render_report(data, rows=None, cols="subject", base=gallery.out_dir))
    assert [th.text for th in root.all("section.facet")[0].all("th.row")] == list(STYLES)


def test_without_the_recipe_the_manifest_alone_gives_the_jobs_it_knows(gallery: Sweep) -> None:
    data = collect(gallery.out_dir)
    known = [j for j in gallery.plan.jobs if j.key in gallery.state.jobs]
    assert sorted(j.job_id for j in data.jobs) == sorted(j.id for j in known)  # in the manifest's order
    assert data.totals.count("not_run") == 0
    assert data.totals.billed == gallery.state.settled
    assert [a.name for a in data.axes] == ["subject", "style", "ratio"]
    root = parse(render_report(data, rows=None, cols=None, base=gallery.out_dir))
    assert "from the manifest alone" in root.one("p.meta").text
    assert len(root.all("div.job")) == len(known)
