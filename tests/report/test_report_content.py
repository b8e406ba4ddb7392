"""The report written for a real sweep: index, grid pages, thumbnails, statuses, totals, escaping,
relative links."""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import urllib.parse
from pathlib import Path

import pytest
from PIL import Image

from kling_pipeline.core.money import format_usd
from kling_pipeline.views.report import STATUS_TEXT, THUMB_BOX, collect, report_status, write_report

from .conftest import ATTR_SUBJECT, RATIOS, SCRIPT_SUBJECT, STYLES, SUBJECTS, Sweep
from .dom import Element
from .site import Site, read_site, target


@pytest.fixture(scope="module")
def site(gallery: Sweep) -> Site:
    """The report of the gallery sweep, written by ``write_report`` into its output directory."""
    result = write_report(gallery.out_dir, gallery.plan)
    assert result.index == gallery.out_dir / "report.html"
    return read_site(result.index)


def expected_status(gallery: Sweep, key: str) -> str:
    job = gallery.state.jobs.get(key)
    return report_status(job.state if job is not None else "none")


def refs(root: Element) -> list[str]:
    return [e.attrs[a] or "" for e in root.iter() for a in ("src", "href") if a in e.attrs]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_report_is_an_index_beside_a_directory_of_pages(gallery: Sweep, site: Site) -> None:
    assert site.index.html.startswith("<!doctype html>\n")
    assert [p.path for p in site.grid] == [gallery.out_dir / "report" / "grid-0001.html"]  # 24 jobs: one page
    assert [p.path.name for p in site.problems] == ["problems-0001.html"]
    assert site.others == []
    assert not list(gallery.out_dir.glob(".report*"))  # temp files and the work directory are gone
    assert not list((gallery.out_dir / "report").glob(".*"))


def test_grid_has_subject_rows_style_columns_and_one_facet_per_ratio(site: Site) -> None:
    facets = site.sections()
    assert [f.one("h2").text.split(" ")[:3] for f in facets] == [["ratio", "=", r] for r in RATIOS]
    for facet in facets:
        assert [th.text for th in facet.all("th.col")] == list(STYLES)
        assert [th.text for th in facet.all("th.row")] == list(SUBJECTS)
        assert all(len(tr.all("td.cell")) == len(STYLES) for tr in facet.one("tbody").all("tr"))
    assert [f.get("id") for f in facets] == ["f-0", "f-1"]
    link = site.index.root.one("section.contents").one("a")
    assert (link.text, link.get("data-first"), link.get("data-last")) == ("ratio = 1:1 … ratio = 16:9", "0", "1")


def test_every_job_is_in_its_cell_with_the_manifests_status(gallery: Sweep, site: Site) -> None:
    facets = site.sections()
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
    for facet in facets:
        for cell in facet.all("td.cell"):
            assert [d.get("data-job")[-2:] for d in cell.all("div.job")] == ["r0", "r1"]


def test_cells_show_thumbnails_linking_to_the_full_image_errors_and_costs(gallery: Sweep, site: Site) -> None:
    page = site.grid[0].path
    for job in gallery.plan.jobs:
        div, state = site.job(job.id), gallery.state.jobs.get(job.key)
        if state is not None and state.state == "completed":
            assert state.done is not None
            files = [gallery.out_dir / o.path for o in state.done.outputs]
            assert [target(page, a.get("href")) for a in div.all("a.thumb")] == files
            thumbs = [target(page, img.get("src")) for img in div.all("img")]
            assert thumbs == [page.parent / "thumbs" / sha256(f)[:2] / f"{sha256(f)}.jpg" for f in files]
            for thumb in thumbs:
                with Image.open(thumb) as im:
                    assert im.format == "JPEG" and max(im.size) <= THUMB_BOX
            assert all(img.get("loading") == "lazy" for img in div.all("img"))
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


def test_each_cell_shows_its_rendered_prompt_as_text(gallery: Sweep, site: Site) -> None:
    prompts = sorted(p.one("p").text for s in site.sections() for p in s.all("details.prompt"))
    # one per cell (its samples share it)
    expected = sorted(gallery.plan.render(j).request["prompt"] for j in gallery.plan.jobs if j.repeat_index == 0)
    assert prompts == expected
    assert f"A {SCRIPT_SUBJECT} on a table, watercolor style & <b>bold</b>" in prompts


def test_totals_match_the_manifest(gallery: Sweep, site: Site) -> None:
    totals_dl = site.index.root.one("dl.totals")
    totals = {e.get("data-total"): e.text for e in totals_dl.iter() if "data-total" in e.attrs}
    counts = {e.get("data-count"): e.text for e in totals_dl.iter() if "data-count" in e.attrs}
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


def test_the_index_lists_the_axes_and_what_each_is_shown_as(site: Site) -> None:
    rows = site.index.root.one("section.axes-list").one("tbody").all("tr")
    assert [(r.one("th").text, r.all("td")[1].text) for r in rows] == [
        ("subject", "rows"), ("style", "columns"), ("ratio", "facet")]
    assert [v.text for v in rows[0].all("span.value")] == list(SUBJECTS)


def test_problem_list_names_every_failed_job_with_its_error(gallery: Sweep, site: Site) -> None:
    failed = [j for j in gallery.plan.jobs if expected_status(gallery, j.key) == "failed"]
    assert [(r.all("code")[0].text, r.all("td")[1].text, r.one("td.error-text").text) for r in site.problem_rows()] == [
        (j.id, ", ".join(f"{k}={v}" for k, v in j.combination.labels.items()), gallery.state.jobs[j.key].error)
        for j in failed]
    heading = site.index.root.one("section.problems").one("h2").text
    assert heading == f"Jobs that did not produce an image {len(failed)}"


def test_markup_in_values_and_prompts_is_text_never_markup(site: Site) -> None:
    for page in [site.index, *site.pages]:
        html = page.html
        assert "<script>alert" not in html and "<img src=x" not in html and "<b>bold" not in html
        assert "<script" not in html  # a single grid page needs no script (facet links only with several)
        for element in page.root.iter():
            assert not any(name.startswith("on") for name in element.attrs), element
        assert {e.tag for e in page.root.iter()} <= {
            "#document", "html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "p", "code", "dl",
            "div", "dt", "dd", "span", "b", "nav", "a", "main", "section", "table", "thead", "tbody", "tr", "th",
            "td", "img", "details", "summary", "footer", "ol", "li"}
    root = site.grid[0].root
    assert root.all("th.row")[0].text == SCRIPT_SUBJECT and root.all("th.row")[2].text == ATTR_SUBJECT
    titles = [i.get("title") for i in root.all("img")]
    assert any(SCRIPT_SUBJECT in t for t in titles) and any(ATTR_SUBJECT in t for t in titles)


def test_only_the_pages_own_style_may_run(site: Site) -> None:
    def digest(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    for page in [site.index, *site.pages]:
        csp = next(m.get("content") for m in page.root.all("meta")
                   if m.attrs.get("http-equiv") == "Content-Security-Policy")
        style = digest(page.root.one("style").text)
        assert csp == (f"default-src 'none'; img-src 'self' file: data:; media-src 'self' file:; style-src {style}; "
                       "script-src 'none'; base-uri 'none'; form-action 'none'")


def test_no_external_urls(site: Site) -> None:
    for page in [site.index, *site.pages]:
        assert not page.root.all("link")
        for ref in refs(page.root):
            assert ref.startswith(("./", "../")), ref
        assert "@import" not in page.html and "url(" not in page.root.one("style").text
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page.html)


def test_every_link_is_relative_and_points_at_a_file(gallery: Sweep, site: Site) -> None:
    recorded = {gallery.out_dir / o.path for j in gallery.state.jobs.values() if j.state == "completed"
                if j.done is not None for o in j.done.outputs}
    full = {target(p.path, a.get("href")) for p in site.grid for a in p.root.all("a.thumb")}
    assert full == recorded
    assert any(" #" in str(t) and ":" in str(t) for t in full)  # the awkward names were exercised
    for page in [site.index, *site.pages]:
        for ref in refs(page.root):
            assert target(page.path, ref).is_file(), ref


def test_a_copied_output_directory_keeps_every_link_valid(gallery: Sweep, site: Site, tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere" / "copied run"
    shutil.copytree(gallery.out_dir, copy)
    moved = read_site(copy / "report.html")
    links = [(p.path, r) for p in [moved.index, *moved.pages] for r in refs(p.root)]
    assert len(links) > 2 * len(site.grid[0].root.all("img")) > 0
    for page, link in links:
        assert gallery.out_dir.parent.name not in urllib.parse.unquote(link)
        assert target(page, link).is_file(), link
        assert target(page, link).is_relative_to(copy)


def test_a_report_written_elsewhere_links_back_into_the_output_directory(gallery: Sweep, tmp_path: Path) -> None:
    index = tmp_path / "pages" / "gallery.html"
    result = write_report(gallery.out_dir, gallery.plan, output=index)
    assert (result.index, result.pages_dir) == (index, tmp_path / "pages" / "gallery")
    written = read_site(index)
    full = [a.get("href") for a in written.grid[0].root.all("a.thumb")]
    assert full and all(link.startswith("../../") for link in full)
    for link in full:
        resolved = target(written.grid[0].path, link)
        assert resolved.is_file() and resolved.is_relative_to(gallery.out_dir.resolve())
    thumbs = [target(written.grid[0].path, img.get("src")) for img in written.grid[0].root.all("img")]
    assert thumbs and all(t.is_file() and t.is_relative_to(tmp_path / "pages" / "gallery" / "thumbs") for t in thumbs)


def test_any_two_axes_make_the_grid(gallery: Sweep, tmp_path: Path) -> None:
    written = read_site(write_report(gallery.out_dir, gallery.plan, rows="ratio", cols="subject",
                                     output=tmp_path / "a.html").index)
    facets = written.sections()
    assert [f.one("h2").one("span.v").text for f in facets] == list(STYLES)
    assert [th.text for th in facets[0].all("th.col")] == list(SUBJECTS)
    assert [th.text for th in facets[0].all("th.row")] == list(RATIOS)
    # one axis given: the other defaults to the first remaining axis with several values
    written = read_site(write_report(gallery.out_dir, gallery.plan, cols="subject", output=tmp_path / "b.html").index)
    assert [th.text for th in written.sections()[0].all("th.row")] == list(STYLES)


def test_without_the_recipe_the_manifest_alone_gives_the_jobs_it_knows(gallery: Sweep, tmp_path: Path) -> None:
    summary = collect(gallery.out_dir, None, tmp_path).summary
    known = [j for j in gallery.plan.jobs if j.key in gallery.state.jobs]
    assert summary.totals.jobs == len(known) and summary.totals.count("not_run") == 0
    assert summary.totals.billed == gallery.state.settled
    assert [a.name for a in summary.axes] == ["subject", "style", "ratio"]
    written = read_site(write_report(gallery.out_dir, output=tmp_path / "m.html").index)
    assert "from the manifest alone" in written.index.root.one("p.meta").text
    assert sorted(d.get("data-job") for d in written.jobs()) == sorted(j.id for j in known)
