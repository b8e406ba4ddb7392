"""How big a pipeline may get, counted before each stage is planned: the ``--max-jobs`` limit
over the whole chain (each downstream stage counted as the upstream values it takes x its own
matrix x repeat before its jobs are made), and how a list output read one file per job is
counted — from the upstream's billed units only when it bills per item of that list, else
from the list's ``maxItems``, else refused at the template that reads it.

Apps other than the bundled ones are written into the project's schema store
(``kling-schemas/``, as ``schema pull`` leaves them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kling_pipeline import plan_file
from kling_pipeline.core.appstore import SchemaStore, StoredApp

from .conftest import WriteRecipe
from .util import cli

IMAGE = 2_800_000  # klingai/image-o1: one image, in microcents


def values(n: int, prefix: str = "v") -> str:
    return "[" + ", ".join(f"{prefix}{i}" for i in range(n)) + "]"


def chain(up: str, down: str, *, down_extra: str = "") -> str:
    """draft (matrix ``up``) -> refine (matrix ``down``): refine starts on line 9."""
    return f"""\
version: 1
app: klingai/image-o1@0pbaxv40
stages:
  draft:
    matrix: {up}
    input:
      prompt: "A {{{{ x }}}}"
      n: 1
  refine:
    needs: draft
    matrix: {down}
    input:
      prompt: "{{{{ draft.input.prompt }}}} {{{{ y }}}}"
      image: "{{{{ draft.image }}}}"
{down_extra}"""


def invalid(write: WriteRecipe, text: str, *flags: str) -> list[str]:
    write(text)
    code, out, err = cli("validate", "r.yaml", *flags)
    assert (code, out) == (2, ""), err
    return err.splitlines()[:-1]


# --- the job limit over the whole chain ----------------------------------------------------------------


def test_a_hostile_chain_is_refused_before_its_downstream_stage_is_expanded(write: WriteRecipe) -> None:
    # 10^4 drafts x a downstream matrix of 10^4: 10^8 jobs, refused from the counts alone
    text = chain(f"{{x: {values(10_000)}}}", f"{{y: {values(100)}, w: {values(100)}}}")
    assert invalid(write, text) == [
        "r.yaml:9:3: stage 'refine' makes up to 100,000,000 jobs (10,000 jobs of 'draft' x 100 x 100 combinations): "
        "with the 10,000 jobs of the stages before it, 100,010,000 in all, more than the limit of 500,000; narrow "
        "it, or raise the limit with --max-jobs N"]


def test_a_huge_downstream_matrix_is_counted_not_expanded(write: WriteRecipe) -> None:
    # 10^40 combinations: only counting can answer this
    axes = ", ".join(f"a{i}: {values(10)}" for i in range(40))
    text = chain(f"{{x: {values(3)}}}", f"{{y: [1], {axes}}}")
    (line,) = invalid(write, text)
    assert line.startswith("r.yaml:9:3: stage 'refine' makes up to about 10^40 jobs (3 jobs of 'draft' x 1 x 10 x "
                           "10 x 10 x (41 axes) combinations)")


def test_a_stage_over_the_limit_is_not_planned_at_all(write: WriteRecipe) -> None:
    # every refinement would be an error of its own (aspect_ratio 7:3 is not one the app takes): only the
    # count is reported, so none of its jobs was made
    text = chain(f"{{x: {values(10)}}}", f"{{y: {values(10)}}}", down_extra="      aspect_ratio: '7:3'\n")
    assert invalid(write, text, "--max-jobs", "100") == [
        "r.yaml:9:3: stage 'refine' makes up to 100 jobs (10 jobs of 'draft' x 10 combinations): with the 10 jobs "
        "of the stages before it, 110 in all, more than the limit of 100; narrow it, or raise the limit with "
        "--max-jobs N"]
    errors = invalid(write, text, "--max-jobs", "110")
    assert errors and all("aspect_ratio" in e for e in errors)


def test_the_count_takes_where_and_repeat_into_account(write: WriteRecipe) -> None:
    text = chain(f"{{x: {values(10)}}}", f"{{y: {values(5)}}}", down_extra="    where: {x: [v0, v1]}\n    repeat: 3\n")
    # 10 drafts + 2 taken x 5 x repeat 3 = 40
    write(text)
    assert cli("validate", "r.yaml", "--max-jobs", "40") == (0, "r.yaml: ok — 40 jobs, $1.12\n", "")
    assert invalid(write, text, "--max-jobs", "39") == [
        "r.yaml:9:3: stage 'refine' makes up to 30 jobs (2 jobs of 'draft' kept by where x 5 combinations x repeat "
        "3): with the 10 jobs of the stages before it, 40 in all, more than the limit of 39; narrow it, or raise "
        "the limit with --max-jobs N"]


def test_include_is_counted_as_for_one_sweep(write: WriteRecipe) -> None:
    text = chain(f"{{x: {values(4)}}}", "{y: [a, b], include: [{y: c}, {y: d}]}")
    assert invalid(write, text, "--max-jobs", "19") == [
        "r.yaml:9:3: stage 'refine' makes up to 16 jobs (4 jobs of 'draft' x (2 combinations + 2 from include)): "
        "with the 4 jobs of the stages before it, 20 in all, more than the limit of 19; narrow it, or raise the "
        "limit with --max-jobs N"]


def test_two_root_stages_share_the_limit(write: WriteRecipe) -> None:
    text = f"""\
version: 1
app: klingai/image-o1@0pbaxv40
stages:
  mugs:
    matrix: {{x: {values(6)}}}
    input: {{prompt: "a {{{{ x }}}} mug"}}
  lamps:
    matrix: {{x: {values(6)}}}
    input: {{prompt: "a {{{{ x }}}} lamp"}}
"""
    assert invalid(write, text, "--max-jobs", "11") == [
        "r.yaml:7:3: stage 'lamps' makes up to 6 jobs (6 combinations): with the 6 jobs of the stages before it, "
        "12 in all, more than the limit of 11; narrow it, or raise the limit with --max-jobs N"]
    assert invalid(write, text, "--max-jobs", "5") == [
        "r.yaml:4:3: stage 'mugs' makes up to 6 jobs (6 combinations), more than the limit of 5; narrow it, or "
        "raise the limit with --max-jobs N"]


def test_only_narrows_what_is_counted_upstream(write: WriteRecipe) -> None:
    text = chain(f"{{x: {values(10)}}}", f"{{y: {values(10)}}}")
    path = write(text)
    # 1 draft + 1 x 10 refinements, within a limit the whole chain (110) is not
    assert [len(sp.plan.jobs) for sp in plan_file(path, only={"x": {"v3"}}, max_jobs=11).stages] == [1, 10]


# --- counting the files of a list output ---------------------------------------------------------------


def store_app(name: str, *, unit: str, quantity_field: str | None, output: dict[str, Any],
              extra_input: dict[str, Any] | None = None) -> None:
    """An app in ./kling-schemas (the cwd is the test's folder): a prompt in, ``output`` out."""
    props: dict[str, Any] = {"prompt": {"type": "string"}, **(extra_input or {})}
    pricing: dict[str, Any] = {"usd_per_unit": "0.01", "unit": unit}
    if quantity_field:
        pricing["quantity_field"] = quantity_field
    stored = StoredApp(name, "v1", "id1", name, "2026-11-27T09:00:00Z", "https://api.example/apps", True, ("v1",),
                       {"type": "object", "properties": props, "required": ["prompt"]},
                       {"type": "object", "properties": output}, pricing, "app document")
    store = SchemaStore(Path("kling-schemas"))
    path = store.file_for(name, "v1")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(stored.encode())


FILES = {"type": "array", "items": {"type": "string", "format": "file", "contentMediaType": "image/png"}}


def fan_out_recipe(app: str, field: str = "frames", input_: str = "") -> str:
    """``shots`` (app, 2 jobs) -> ``refine`` (image-o1) reading one file of ``field`` per job: refine on line 8."""
    return f"""\
version: 1
app: klingai/image-o1@0pbaxv40
stages:
  shots:
    app: {app}@v1
    matrix: {{subject: [mug, lamp]}}
    input: {{prompt: "A {{{{ subject }}}}"{input_}}}
  refine:
    needs: shots
    input:
      prompt: refined
      image: "{{{{ shots.{field} }}}}"
"""


def test_a_list_billed_per_second_with_no_bound_is_refused_where_it_is_read(write: WriteRecipe) -> None:
    store_app("acme/storyboard", unit="second", quantity_field="duration", output={"frames": FILES},
              extra_input={"duration": {"type": "integer", "default": 5}})
    assert invalid(write, fan_out_recipe("acme/storyboard", input_=", duration: 8")) == [
        "r.yaml:12:14: input.image: shots.frames fans out one job per file, but how many files a task of "
        "acme/storyboard returns is not known before it runs: it bills per second, not per image, and its output "
        "schema gives frames no maxItems; read a single file output of shots, or state the most in the app's "
        "output schema (maxItems)"]


def test_a_list_billed_per_run_with_no_bound_is_refused(write: WriteRecipe) -> None:
    store_app("acme/contact-sheet", unit="run", quantity_field=None, output={"images": FILES})
    (line,) = invalid(write, fan_out_recipe("acme/contact-sheet", "images"))
    assert line.startswith("r.yaml:12:14: input.image: shots.images fans out one job per file, but how many files a "
                           "task of acme/contact-sheet returns is not known before it runs: it bills per run, not "
                           "per image")


def test_a_list_bounded_by_max_items_is_counted_at_that_bound(write: WriteRecipe) -> None:
    store_app("acme/storyboard", unit="second", quantity_field="duration", output={"frames": {**FILES, "maxItems": 4}},
              extra_input={"duration": {"type": "integer", "default": 5}})
    path = write(fan_out_recipe("acme/storyboard", input_=", duration: 8"))
    p = plan_file(path)
    shots, refine = p.stages
    # 8 seconds billed per shot, but 4 frames at most: 4 refinements per shot, not 8
    assert [j.units for j in shots.plan.jobs] == [8, 8]
    assert [j.id for j in refine.plan.jobs] == [f"{s}.{i}" for s in ("mug", "lamp") for i in range(4)]
    assert refine.plan.total_cost == 8 * IMAGE
    code, out, _ = cli("plan", "r.yaml")
    assert code == 0
    assert out.splitlines()[1].endswith("(at most: a list output fans out one job per file, counted at its maxItems)")
    assert "needs shots (each file of its frames, at most 4 a task)" in out
    code, out, _ = cli("plan", "r.yaml", "--json")
    assert [s["totals"]["at_most"] for s in json.loads(out)["stages"]] == [False, True]


def test_a_list_billed_per_item_is_counted_as_billed_capped_by_max_items(write: WriteRecipe) -> None:
    store_app("acme/shots", unit="image", quantity_field="count", output={"images": {**FILES, "maxItems": 2}},
              extra_input={"count": {"type": "integer", "default": 1}})
    p = plan_file(write(fan_out_recipe("acme/shots", "images", ", count: '{{ 1 if subject == \"mug\" else 3 }}'")))
    # the mug is billed 1 image (1 refinement); the lamp 3, of which the list holds 2 at most
    assert [j.id for j in p.stages[1].plan.jobs] == ["mug.0", "lamp.0", "lamp.1"]


def test_a_bundled_list_billed_per_image_is_counted_as_billed(write: WriteRecipe) -> None:
    # image-o1 bills n images; its images list holds at most that many
    text = chain("{x: [a, b]}", "{y: [1]}").replace("      n: 1\n", "      n: '{{ 2 if x == \"a\" else 3 }}'\n")
    p = plan_file(write(text.replace("draft.image }}", "draft.images }}")))
    assert [j.id for j in p.stages[1].plan.jobs] == ["a.0-1", "a.1-1", "b.0-1", "b.1-1", "b.2-1"]


def test_a_hostile_list_bound_is_refused_by_the_count(write: WriteRecipe) -> None:
    store_app("acme/storyboard", unit="second", quantity_field=None,
              output={"frames": {**FILES, "maxItems": 10**6}})
    assert invalid(write, fan_out_recipe("acme/storyboard")) == [
        "r.yaml:8:3: stage 'refine' makes up to 2,000,000 jobs (2,000,000 files of shots.frames, counted at most "
        "1,000,000 a task x 1 combination): with the 2 jobs of the stages before it, 2,000,002 in all, more than "
        "the limit of 500,000; narrow it, or raise the limit with --max-jobs N"]


@pytest.mark.parametrize("most", [0, 1])
def test_a_small_list_bound(write: WriteRecipe, most: int) -> None:
    store_app("acme/storyboard", unit="second", quantity_field=None, output={"frames": {**FILES, "maxItems": most}})
    p = plan_file(write(fan_out_recipe("acme/storyboard")))
    assert [j.id for j in p.stages[1].plan.jobs] == [f"{s}.0" for s in ("mug", "lamp")][:2 * most]
