"""Every job state, odd matrices, hostile manifests and images, from hand-written manifests (no run
needed), read back from the pages written."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests_support import png_bytes

from kling_pipeline.core.errors import UsageError
from kling_pipeline.core.jobs import Job
from kling_pipeline.core.planning import Plan, plan_file
from kling_pipeline.views.report import ReportSummary, collect, image_href, layout, write_report

from .site import Site, read_site, target

PRICE = 2_800_000


def intent(job: Job, plan: Plan) -> dict[str, Any]:
    return {"t": "intent", "key": job.key, "job": job.id, "attempt": 1, "input": plan.render(job).request,
            "reserved_microcents": job.cost, "units": job.units, "output": job.output_name,
            "combination": dict(job.combination.labels), "repeat_index": job.repeat_index}


def records_for(plan: Plan, job: Job, state: str, *, image: str | None = None,
                sha256: str = "0" * 64, size: int = 1) -> list[dict[str, Any]]:
    """The records a run leaves for ``job`` in ``state``."""
    task = f"task-{job.key[:8]}"
    rs = [intent(job, plan)]
    if state == "intent":
        return rs
    if state == "not_created":
        return [*rs, {"t": "not_created", "key": job.key, "reason": "HTTP 429: rate limited; no task was created"}]
    if state == "unknown":
        return [*rs, {"t": "unknown", "key": job.key, "reason": "submit: connection lost before the answer"}]
    rs.append({"t": "accepted", "key": job.key, "task": task})
    if state == "submitted":
        return rs
    done: dict[str, Any] = {"t": "done", "key": job.key, "job": job.id, "task": task, "status": state,
                            "billed_microcents": PRICE if state == "completed" else 0, "outputs": [], "error": None}
    if state == "completed":
        path = image or f"{job.output_name}.png"
        done["outputs"] = [{"path": path, "sha256": sha256, "size": size, "content_type": "image/png",
                            "sidecar": path + ".json"}]
    else:
        done["error"] = f"Kling task {state}: <b>boom</b> & \"quotes\""
    return [*rs, done]


def write_manifest(out_dir: Path, records: list[dict[str, Any]]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in [{"t": "run", "recipe": "r.yaml", "app": "klingai/image-o1",
                                                   "cap_microcents": 100_000_000, "at": 0}, *records])
    (out_dir / "manifest.jsonl").write_text(text, encoding="utf-8")


ONE_AXIS = """
version: 1
name: states
app: klingai/image-o1@0pbaxv40
matrix:
  subject: [a, b, c, d, e, f, g]
input:
  prompt: "a photo of {{ subject }}"
output:
  dir: out
"""


def report(out: Path, plan: Plan | None = None, **options: Any) -> Site:
    return read_site(write_report(out, plan, **options).index)


def summary(out: Path, plan: Plan | None, tmp_path: Path) -> ReportSummary:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return collect(out, plan, work).summary


@pytest.fixture
def states_plan(recipe_file: Callable[..., Path]) -> Plan:
    return plan_file(recipe_file(ONE_AXIS))


STATES = ("completed", "failed", "unknown", "intent", "submitted", "not_created", "cancelled")


def test_every_manifest_state_has_its_status_badge_and_error(states_plan: Plan) -> None:
    out = states_plan.output_dir
    records = [r for job, st in zip(states_plan.jobs, STATES, strict=True) for r in records_for(states_plan, job, st)]
    write_manifest(out, records)
    (out / states_plan.jobs[0].output_name).with_suffix(".png").write_bytes(png_bytes(8, 8))
    site = report(out, states_plan)
    assert [d.get("data-status") for d in site.jobs()] == ["completed", "failed", "unknown", "in_flight",
                                                           "in_flight", "not_run", "cancelled"]
    # one axis of 7 values: too many side by side, so down the page, in a single column
    root = site.grid[0].root
    assert [th.text for th in root.all("th.row")] == list("abcdefg")
    assert not root.all("th.col") and all(len(tr.all("td")) == 1 for tr in root.one("table.grid").all("tr"))
    jobs = {d.get("data-job"): d for d in site.jobs()}
    badge = {jid: d.one("span.badge").text for jid, d in jobs.items()}
    assert badge == {"a": "done", "b": "failed", "c": "unknown", "d": "in flight", "e": "in flight",
                     "f": "not run", "g": "cancelled"}
    assert jobs["b"].one("p.error-text").text == 'Kling task failed: <b>boom</b> & "quotes"'
    assert jobs["c"].one("p.error-text").text == "submit: connection lost before the answer"
    assert jobs["f"].one("p.error-text").text == "HTTP 429: rate limited; no task was created"
    assert jobs["e"].one("code.task").text == f"task-{states_plan.jobs[4].key[:8]}"
    assert jobs["d"].one("span.cost").text == "$0.028 planned"
    totals = site.index.root.one("dl.totals")
    assert {e.get("data-count"): e.text for e in totals.iter() if "data-count" in e.attrs} == {
        "completed": "1 done", "failed": "1 failed", "cancelled": "1 cancelled", "unknown": "1 unknown",
        "in_flight": "2 in flight", "not_run": "1 not run"}
    # the unresolved submits (unknown, intent, submitted) hold reservations
    reserved = [e.text for e in totals.iter() if e.attrs.get("data-total") == "reserved"]
    assert reserved == ["$0.084"]
    assert [r.all("code")[0].text for r in site.problem_rows()] == ["b", "c", "d", "e", "g"]


def test_a_recorded_image_missing_on_disk_is_shown_as_missing(states_plan: Plan, tmp_path: Path) -> None:
    out = states_plan.output_dir
    write_manifest(out, records_for(states_plan, states_plan.jobs[0], "completed"))
    totals = summary(out, states_plan, tmp_path).totals
    assert totals.images == 0 and totals.images_missing == 1
    site = report(out, states_plan)
    assert not site.grid[0].root.all("img")
    assert site.job("a").one("span.placeholder").text == f"image missing: {states_plan.jobs[0].output_name}.png"
    assert [e.text for e in site.index.root.iter() if e.attrs.get("data-total") == "images-missing"] == [
        "1 missing on disk"]


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", "javascript:alert(1)", "C:/x.png", "a\\b.png"])
def test_an_image_path_leaving_the_output_directory_is_never_linked(states_plan: Plan, path: str) -> None:
    out = states_plan.output_dir
    write_manifest(out, records_for(states_plan, states_plan.jobs[0], "completed", image=path))
    if ":" in path and not path.startswith("C:"):
        (out / path).write_bytes(png_bytes(8, 8))  # a real file named like a URL scheme: linked, but as a path
        site = report(out, states_plan)
        assert site.grid[0].root.one("a.thumb").get("href") == "../javascript%3Aalert%281%29"
        return
    site = report(out, states_plan)
    assert not site.grid[0].root.all("img") and not site.grid[0].root.all("a.thumb")
    assert "outside the output directory" in site.job("a").one("span.placeholder").text


def test_image_links_are_percent_encoded_and_relative_to_the_page(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert image_href(out, "a b/#1/x?.png", out) == "./a%20b/%231/x%3F.png"
    assert image_href(out, "x.png", tmp_path / "site" / "pages") == "../../out/x.png"
    assert image_href(out, "100%.png", tmp_path) == "./out/100%25.png"


def test_a_recipe_without_a_matrix_renders_its_single_job(recipe_file: Callable[..., Path]) -> None:
    plan = plan_file(recipe_file("""
        version: 1
        app: klingai/image-o1@0pbaxv40
        input:
          prompt: "a lighthouse at dusk"
        output:
          dir: out
        """))
    site = report(plan.output_dir, plan)  # never run: no manifest yet
    assert [d.get("data-status") for d in site.jobs()] == ["not_run"]
    root = site.grid[0].root
    assert len(root.all("section.facet")) == 1 and len(root.all("td.cell")) == 1
    assert root.one("details.prompt").one("p").text == "a lighthouse at dusk"
    assert "one job, no matrix" in site.index.root.one("p.axes").text
    assert not site.index.root.all("section.axes-list") and not site.index.root.all("nav")
    with pytest.raises(UsageError, match=r"^--rows subject: no such axis; this sweep has no matrix axes$"):
        write_report(plan.output_dir, plan, rows="subject")


INCLUDE = """
version: 1
name: inc
app: klingai/image-o1@0pbaxv40
matrix:
  fruit: [apple, pear]
  animal: [cat, dog]
  size: [small]
  include:
    - color: pink
      animal: cat
    - fruit: banana
input:
  prompt: "a {{ fruit }}{% if animal is defined %} and a {{ animal }}{% endif %}"
output:
  dir: out
"""


@pytest.mark.parametrize(("values", "repeat", "across"), [(3, 1, True), (6, 1, True), (7, 1, False),
                                                          (3, 2, True), (4, 2, False)])
def test_a_single_axis_goes_across_when_its_cells_fit(recipe_file: Callable[..., Path], values: int, repeat: int,
                                                      across: bool, tmp_path: Path) -> None:
    items = ", ".join(f"v{i}" for i in range(values))
    plan = plan_file(recipe_file(f"""
        version: 1
        app: klingai/image-o1@0pbaxv40
        matrix:
          style: [{items}]
        repeat: {repeat}
        input:
          prompt: "a mug, {{{{ style }}}}"
        output:
          dir: out
        """))
    root = report(plan.output_dir, plan).grid[0].root
    expected = [f"v{i}" for i in range(values)]
    if across:
        assert [th.text for th in root.all("th.col")] == expected and not root.all("th.row")
        assert len(root.one("table.grid").all("tr")) == 2  # the header and one row of cells
    else:
        assert [th.text for th in root.all("th.row")] == expected and not root.all("th.col")
    # either way the user can choose
    data = summary(plan.output_dir, plan, tmp_path)
    assert layout(data, "style", None).rows is not None and layout(data, None, "style").cols is not None


def test_keys_only_some_jobs_have_read_as_not_set(recipe_file: Callable[..., Path], tmp_path: Path) -> None:
    plan = plan_file(recipe_file(INCLUDE))
    data = summary(plan.output_dir, plan, tmp_path)
    assert [(a.name, a.values, a.partial) for a in data.axes] == [
        ("fruit", ("apple", "pear", "banana"), False), ("animal", ("cat", "dog"), True),
        ("size", ("small",), True), ("color", ("pink",), True)]
    grid = layout(data)
    assert (grid.rows and grid.rows.name, grid.cols and grid.cols.name) == ("fruit", "animal")
    assert grid.col_values == ("cat", "dog", None)
    assert [a.name for a in grid.facet_axes] == ["size", "color"]  # (small | not set), (pink | not set)
    site = report(plan.output_dir, plan)
    sections = site.sections()
    assert [th.text for th in sections[0].all("th.col")] == ["cat", "dog", "(not set)"]
    assert [s.one("h2").text for s in sections] == [
        "size = small · color = pink 2 jobs", "size = small · color = (not set) 2 jobs",
        "size = (not set) · color = (not set) 1 job"]
    # rows without a job in a facet are left out; cells without one say so
    assert [[th.text for th in s.all("th.row")] for s in sections] == [["apple", "pear"], ["apple", "pear"],
                                                                        ["banana"]]
    assert [c.text.strip() for c in sections[2].all("td.cell")][:2] == ["no job", "no job"]
    assert len(site.jobs()) == len(plan.jobs) == 5


def test_single_valued_axes_are_named_once_not_made_facets(recipe_file: Callable[..., Path], tmp_path: Path) -> None:
    plan = plan_file(recipe_file(INCLUDE.replace("  include:\n    - color: pink\n      animal: cat\n"
                                                 "    - fruit: banana\n", "")))
    grid = layout(summary(plan.output_dir, plan, tmp_path))
    assert grid.fixed == (("size", "small"),) and grid.facet_axes == ()
    assert len(report(plan.output_dir, plan).sections()) == 1


def test_bad_axis_names_are_usage_errors_listing_the_axes(states_plan: Plan, tmp_path: Path) -> None:
    data = summary(states_plan.output_dir, states_plan, tmp_path)
    with pytest.raises(UsageError, match=r"^--cols colour: no such axis; the axes are: subject$"):
        layout(data, None, "colour")
    with pytest.raises(UsageError, match=r"^--rows and --cols both name subject; choose two different axes$"):
        layout(data, "subject", "subject")
    with pytest.raises(UsageError, match=r"^--cols colour: no such axis; the axes are: subject$"):
        write_report(states_plan.output_dir, states_plan, cols="colour")
    assert not states_plan.output_dir.exists() or list(states_plan.output_dir.iterdir()) == []  # nothing written


def test_without_a_plan_a_directory_needs_a_manifest(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"no manifest\.jsonl here"):
        collect(tmp_path, None, tmp_path)


def test_manifest_jobs_not_in_the_plan_are_listed_apart_and_counted_in_the_spend(
        states_plan: Plan, recipe_file: Callable[..., Path], tmp_path: Path) -> None:
    old = plan_file(recipe_file(ONE_AXIS.replace("a photo of", "an old photo of"), "old.yaml"))
    out = states_plan.output_dir
    write_manifest(out, records_for(old, old.jobs[0], "completed") + records_for(states_plan, states_plan.jobs[1],
                                                                                  "completed"))
    for plan, job in ((old, old.jobs[0]), (states_plan, states_plan.jobs[1])):
        (out / f"{job.output_name}.png").write_bytes(png_bytes(8, 8, (10, 20, job.repeat_index + len(job.id))))
        assert plan.output_dir == out
    data = summary(out, states_plan, tmp_path)
    assert data.other_jobs == 1 and data.totals.billed == 2 * PRICE
    assert data.totals.count("completed") == 1 and data.totals.jobs == 7
    site = report(out, states_plan)
    assert [p.path.name for p in site.others] == ["others-0001.html"]
    other = site.others[0].root.one("section.others")
    assert other.one("div.job").get("data-job") == "a"
    assert other.one("p.labels").text == "subject=a"
    assert other.one("details.prompt").one("p").text == "an old photo of a"
    assert len(site.grid[0].root.all("img")) == len(other.all("img")) == 1
    assert target(site.others[0].path, other.one("img").get("src")).is_file()
    heading = site.index.root.one("section.others").one("h2").text
    assert heading == "In the manifest but not in this plan 1"


FOUR_AXES = """
version: 1
app: klingai/image-o1@0pbaxv40
matrix:
  a: [1, 2]
  b: [x, y]
  c: [p, q, r]
  d: [u, v]
input:
  prompt: "{{ a }} {{ b }} {{ c }} {{ d }}"
output:
  dir: out
"""


def test_facets_are_laid_out_in_axis_order_and_listed_on_the_index(recipe_file: Callable[..., Path]) -> None:
    plan = plan_file(recipe_file(FOUR_AXES))
    site = report(plan.output_dir, plan, rows="c", cols="a")
    assert len(site.grid) == 1  # 24 jobs fit one page
    facets = site.sections()
    assert [f.get("id") for f in facets] == ["f-0-0", "f-0-1", "f-1-0", "f-1-1"]
    assert [f.one("h2").text for f in facets] == [f"b = {b} · d = {d} 6 jobs" for b in "xy" for d in "uv"]
    assert all(len(f.all("th.row")) == 3 and len(f.all("th.col")) == 2 for f in facets)
    assert not site.index.root.all("nav")  # one page: nothing to jump between


def test_small_pages_split_facets_and_rows_and_the_index_jumps_to_them(recipe_file: Callable[..., Path]) -> None:
    plan = plan_file(recipe_file(FOUR_AXES))
    site = report(plan.output_dir, plan, rows="c", cols="a", page_jobs=4)  # 2 rows of 2 columns a page
    # pages fill up: a facet's last rows share a page with the next facet's first ones
    links = site.index.root.one("section.contents").all("a")
    assert [(a.text, a.get("data-first"), a.get("data-last")) for a in links] == [
        (f"b = {b} · d = u (c p \u2013 q)", f"{i}.0", f"{i}.0") if n == 0 else
        (f"b = {b} · d = u (c r) … b = {b} · d = v (c p)", f"{i}.0", f"{i}.1") if n == 1 else
        (f"b = {b} · d = v (c q \u2013 r)", f"{i}.1", f"{i}.1")
        for i, b in enumerate("xy") for n in range(3)]
    assert [p.path.name for p in site.grid] == [f"grid-{n:04d}.html" for n in range(1, 7)]
    assert [[(s.get("id"), s.one("h2").text, [th.text for th in s.all("th.row")]) for s in p.root.all("section.facet")]
            for p in site.grid[:3]] == [
        [("f-0-0", "b = x · d = u (goes on on the next page) 4 jobs", ["p", "q"])],
        [("f-0-0", "b = x · d = u (continued) 2 jobs", ["r"]),
         ("f-0-1", "b = x · d = v (goes on on the next page) 2 jobs", ["p"])],
        [("f-0-1", "b = x · d = v (continued) 4 jobs", ["q", "r"])]]
    assert all(len(p.root.all("div.job")) <= 4 for p in site.grid)
    # each page links to the index and its neighbours
    pager = [(a.text, a.get("href")) for a in site.grid[1].root.all("nav.pager")[0].all("a")]
    assert pager == [("↑ the sweep", "../report.html"), ("← previous", "grid-0001.html"), ("next →", "grid-0003.html")]
    assert [a.text for a in site.grid[-1].root.all("nav.pager")[1].all("a")] == ["↑ the sweep", "← previous"]
    # the facet jump (shown by the index's script only): one select per facet axis
    jump = site.index.root.one("nav.facet-controls")
    assert "hidden" in jump.attrs
    assert [[(o.get("value"), o.text) for o in s.all("option")] for s in jump.all("select")] == [
        [("0", "x"), ("1", "y")], [("0", "u"), ("1", "v")]]
    assert len(site.index.root.all("script")) == 1


def test_write_report_writes_the_index_and_its_directory_atomically(states_plan: Plan) -> None:
    out = states_plan.output_dir
    write_manifest(out, [])
    (out / "report.html").write_text("old page", encoding="utf-8")
    result = write_report(out, states_plan)
    assert result.index == out / "report.html"
    assert result.index.read_text(encoding="utf-8").startswith("<!doctype html>")
    assert sorted(p.name for p in out.iterdir()) == ["manifest.jsonl", "report", "report.html"]
    assert sorted(p.name for p in (out / "report").iterdir()) == ["grid-0001.html"]  # no image: no thumbnail
    # a directory given as the output gets report.html inside it, and report/ beside it
    elsewhere = write_report(out, states_plan, output=out.parent)
    assert (elsewhere.index, elsewhere.pages_dir) == (out.parent / "report.html", out.parent / "report")
