"""Every job state, odd matrices and hostile manifests, from hand-written manifests (no run needed)."""

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
from kling_pipeline.views.report import collect, image_href, layout, render_report, write_report

from .dom import Element, parse

PRICE = 2_800_000


def intent(job: Job, plan: Plan) -> dict[str, Any]:
    return {"t": "intent", "key": job.key, "job": job.id, "attempt": 1, "input": plan.render(job).request,
            "reserved_microcents": job.cost, "units": job.units, "output": job.output_name,
            "combination": dict(job.combination.labels), "repeat_index": job.repeat_index}


def records_for(plan: Plan, job: Job, state: str, *, image: str | None = None) -> list[dict[str, Any]]:
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
        done["outputs"] = [{"path": path, "sha256": "0" * 64, "size": 1, "content_type": "image/png",
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


@pytest.fixture
def states_plan(recipe_file: Callable[..., Path]) -> Plan:
    return plan_file(recipe_file(ONE_AXIS))


STATES = ("completed", "failed", "unknown", "intent", "submitted", "not_created", "cancelled")


def test_every_manifest_state_has_its_status_badge_and_error(states_plan: Plan) -> None:
    out = states_plan.output_dir
    records = [r for job, st in zip(states_plan.jobs, STATES, strict=True) for r in records_for(states_plan, job, st)]
    write_manifest(out, records)
    (out / states_plan.jobs[0].output_name).with_suffix(".png").write_bytes(png_bytes(8, 8))
    data = collect(out, states_plan)
    assert [j.status for j in data.jobs] == ["completed", "failed", "unknown", "in_flight", "in_flight",
                                             "not_run", "cancelled"]
    root = parse(render_report(data, rows=None, cols=None, base=out))
    # one axis of 7 values: too many side by side, so down the page, in a single column
    assert [th.text for th in root.all("th.row")] == list("abcdefg")
    assert not root.all("th.col") and all(len(tr.all("td")) == 1 for tr in root.one("table.grid").all("tr"))
    jobs = {d.get("data-job"): d for d in root.all("div.job")}
    badge = {jid: d.one("span.badge").text for jid, d in jobs.items()}
    assert badge == {"a": "done", "b": "failed", "c": "unknown", "d": "in flight", "e": "in flight",
                     "f": "not run", "g": "cancelled"}
    assert jobs["b"].one("p.error-text").text == 'Kling task failed: <b>boom</b> & "quotes"'
    assert jobs["c"].one("p.error-text").text == "submit: connection lost before the answer"
    assert jobs["f"].one("p.error-text").text == "HTTP 429: rate limited; no task was created"
    assert jobs["e"].one("code.task").text == f"task-{states_plan.jobs[4].key[:8]}"
    assert jobs["d"].one("span.cost").text == "$0.028 planned"
    totals = root.one("dl.totals")
    assert {e.get("data-count"): e.text for e in totals.iter() if "data-count" in e.attrs} == {
        "completed": "1 done", "failed": "1 failed", "cancelled": "1 cancelled", "unknown": "1 unknown",
        "in_flight": "2 in flight", "not_run": "1 not run"}
    # the unresolved submits (unknown, intent, submitted) hold reservations
    reserved = [e.text for e in totals.iter() if e.attrs.get("data-total") == "reserved"]
    assert reserved == ["$0.084"]
    problems = [r.all("code")[0].text for r in root.one("section.problems").all("tr")[1:]]
    assert problems == ["b", "c", "d", "e", "g"]


def test_a_recorded_image_missing_on_disk_is_shown_as_missing(states_plan: Plan) -> None:
    out = states_plan.output_dir
    write_manifest(out, records_for(states_plan, states_plan.jobs[0], "completed"))
    data = collect(out, states_plan)
    assert data.totals.images == 0 and data.totals.images_missing == 1
    root = parse(render_report(data, rows=None, cols=None, base=out))
    assert not root.all("img")
    assert job_div(root, "a").one("span.placeholder").text == f"image missing: {states_plan.jobs[0].output_name}.png"
    assert [e.text for e in root.iter() if e.attrs.get("data-total") == "images-missing"] == ["1 missing on disk"]


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", "javascript:alert(1)", "C:/x.png", "a\\b.png"])
def test_an_image_path_leaving_the_output_directory_is_never_linked(states_plan: Plan, path: str) -> None:
    out = states_plan.output_dir
    write_manifest(out, records_for(states_plan, states_plan.jobs[0], "completed", image=path))
    if ":" in path and not path.startswith("C:"):
        (out / path).write_bytes(png_bytes(8, 8))  # a real file named like a URL scheme: linked, but as a path
        root = parse(render_report(collect(out, states_plan), rows=None, cols=None, base=out))
        assert root.one("img").get("src") == "./javascript%3Aalert%281%29"
        return
    root = parse(render_report(collect(out, states_plan), rows=None, cols=None, base=out))
    assert not root.all("img") and not root.all("a.thumb")
    assert "outside the output directory" in job_div(root, "a").one("span.placeholder").text


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
    data = collect(plan.output_dir, plan)  # never run: no manifest yet
    assert data.axes == () and [j.status for j in data.jobs] == ["not_run"]
    root = parse(render_report(data, rows=None, cols=None, base=plan.output_dir))
    assert len(root.all("section.facet")) == 1 and len(root.all("td.cell")) == 1
    assert root.one("details.prompt").one("p").text == "a lighthouse at dusk"
    assert "one job, no matrix" in root.one("p.axes").text
    assert not root.all("nav")
    with pytest.raises(UsageError, match=r"^--rows subject: no such axis; this sweep has no matrix axes$"):
        render_report(data, rows="subject", cols=None, base=plan.output_dir)


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
                                                      across: bool) -> None:
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
    data = collect(plan.output_dir, plan)
    root = parse(render_report(data, rows=None, cols=None, base=plan.output_dir))
    expected = [f"v{i}" for i in range(values)]
    if across:
        assert [th.text for th in root.all("th.col")] == expected and not root.all("th.row")
        assert len(root.one("table.grid").all("tr")) == 2  # the header and one row of cells
    else:
        assert [th.text for th in root.all("th.row")] == expected and not root.all("th.col")
    # either way the user can choose
    assert layout(data, "style", None).rows is not None and layout(data, None, "style").cols is not None


def test_keys_only_some_jobs_have_read_as_not_set(recipe_file: Callable[..., Path]) -> None:
    plan = plan_file(recipe_file(INCLUDE))
    data = collect(plan.output_dir, plan)
    assert [(a.name, a.values, a.partial) for a in data.axes] == [
        ("fruit", ("apple", "pear", "banana"), False), ("animal", ("cat", "dog"), True),
        ("size", ("small",), True), ("color", ("pink",), True)]
    grid = layout(data)
    assert (grid.rows and grid.rows.name, grid.cols and grid.cols.name) == ("fruit", "animal")
    assert grid.col_values == ("cat", "dog", None)
    assert [a.name for a in grid.facet_axes] == ["size", "color"]  # (small | not set), (pink | not set)
    root = parse(render_report(data, rows=None, cols=None, base=plan.output_dir))
    assert [th.text for th in root.all("section.facet")[0].all("th.col")] == ["cat", "dog", "(not set)"]
    cells = [sum(1 for c in f.all("td.cell") if c.all("div.job")) for f in root.all("section.facet")]
    assert sum(cells) == len(plan.jobs) == 5


def test_single_valued_axes_are_named_once_not_made_facets(recipe_file: Callable[..., Path]) -> None:
    plan = plan_file(recipe_file(INCLUDE.replace("  include:\n    - color: pink\n      animal: cat\n"
                                                 "    - fruit: banana\n", "")))
    grid = layout(collect(plan.output_dir, plan))
    assert grid.fixed == (("size", "small"),) and grid.facet_axes == () and len(grid.facets) == 1


def test_bad_axis_names_are_usage_errors_listing_the_axes(states_plan: Plan) -> None:
    data = collect(states_plan.output_dir, states_plan)
    with pytest.raises(UsageError, match=r"^--cols colour: no such axis; the axes are: subject$"):
        layout(data, None, "colour")
    with pytest.raises(UsageError, match=r"^--rows and --cols both name subject; choose two different axes$"):
        layout(data, "subject", "subject")


def test_without_a_plan_a_directory_needs_a_manifest(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"no manifest\.jsonl here"):
        collect(tmp_path)


def test_manifest_jobs_not_in_the_plan_are_listed_apart_and_counted_in_the_spend(
        states_plan: Plan, recipe_file: Callable[..., Path]) -> None:
    old = plan_file(recipe_file(ONE_AXIS.replace("a photo of", "an old photo of"), "old.yaml"))
    out = states_plan.output_dir
    write_manifest(out, records_for(old, old.jobs[0], "completed") + records_for(states_plan, states_plan.jobs[1],
                                                                                  "completed"))
    for plan, job in ((old, old.jobs[0]), (states_plan, states_plan.jobs[1])):
        (out / f"{job.output_name}.png").write_bytes(png_bytes(8, 8))
        assert plan.output_dir == out
    data = collect(out, states_plan)
    assert [j.job_id for j in data.other_jobs] == ["a"] and data.totals.billed == 2 * PRICE
    assert data.totals.count("completed") == 1 and data.totals.jobs == 7
    root = parse(render_report(data, rows=None, cols=None, base=out))
    other = root.one("section.others")
    assert other.one("p.labels").text == "subject=a"
    assert other.one("details.prompt").one("p").text == "an old photo of a"
    assert len(root.all("img")) == 2


def test_facets_are_rendered_in_axis_order_with_a_switch_and_an_index(tmp_path: Path,
                                                                      recipe_file: Callable[..., Path]) -> None:
    plan = plan_file(recipe_file("""
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
        """))
    root = parse(render_report(collect(plan.output_dir, plan), rows="c", cols="a", base=plan.output_dir))
    facets = root.all("section.facet")
    assert [(f.get("data-f-0"), f.get("data-f-1")) for f in facets] == [("0", "0"), ("0", "1"), ("1", "0"),
                                                                        ("1", "1")]
    assert [f.one("h2").text for f in facets] == [f"b = {b} · d = {d} 6 jobs" for b in "xy" for d in "uv"]
    controls = root.one("nav.facet-controls")
    assert "hidden" in controls.attrs  # shown by the script only
    selects = controls.all("select")
    assert [[o.text for o in s.all("option")] for s in selects] == [["all", "x", "y"], ["all", "u", "v"]]
    assert [[o.attrs.get("value") for o in s.all("option") if "selected" in o.attrs] for s in selects] == [["0"],
                                                                                                           ["0"]]
    assert [a.get("href") for a in root.one("nav.facet-index").all("a")] == [f"#facet-{i}" for i in range(4)]
    assert all(len(f.all("th.row")) == 3 and len(f.all("th.col")) == 2 for f in facets)


def test_write_report_replaces_the_page_atomically(states_plan: Plan) -> None:
    out = states_plan.output_dir
    write_manifest(out, [])
    (out / "report.html").write_text("old page", encoding="utf-8")
    path = write_report(out, states_plan)
    assert path == out / "report.html" and path.read_text(encoding="utf-8").startswith("<!doctype html>")
    assert sorted(p.name for p in out.iterdir()) == ["manifest.jsonl", "report.html"]
    # a directory given as the output gets report.html inside it
    assert write_report(out, states_plan, output=out.parent) == out.parent / "report.html"


def job_div(root: Element, job_id: str) -> Element:
    (found,) = [d for d in root.all("div.job") if d.attrs.get("data-job") == job_id]
    return found
