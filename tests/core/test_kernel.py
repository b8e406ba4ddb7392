"""The compiled per-job path (``kernel``) plans exactly what the general path plans.

Generated recipes mix every kind of request leaf the kernel takes (constants, plain
references into axes, vars, include keys, ``recipe``, ``repeat_index``, text of literals
and references) with values the app schema refuses, references that do not resolve,
mapping values, repeats, include/exclude/zip and file-name templates; each is planned
twice, with and without the kernel, and the two outcomes must be the same: the same
jobs (ids, keys, names, units, costs, combinations), warnings and totals, or the same
errors, in the same order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kling_pipeline import RecipeError, plan_file
from kling_pipeline.core import build
from kling_pipeline.core.kernel import Kernel
from kling_pipeline.core.planning import _tally, _tally_by_label

from .conftest import WriteRecipe
from .util import HEAD

SCALARS = st.sampled_from(["16:9", "1:1", "5:4", "1k", "2k", "4k", "mug", "a b", "x" * 2600, "", "{x}", "é\"\\",
                           0, 1, 2, 3, 9, 10, -1, 1.0, 2.5, True, False, None])
TEXT = st.sampled_from(["16:9", "1:1", "1k", "2k", "mug", " a lamp ", "é\"\\ {x}"])
NAMED = st.fixed_dictionaries({"name": st.sampled_from(["noir", "pop", "1:1"]), "text": st.one_of(TEXT, SCALARS)},
                              optional={"n": st.sampled_from([1, 2, "1"]), "ratio": st.sampled_from(["1:1", "7:1"])})
VALUES = st.one_of(TEXT, TEXT, SCALARS, NAMED, st.lists(SCALARS, max_size=2))
AXES = ("a", "b", "c")
ATTRS = st.sampled_from(["", "", "", ".text", ".text", ".name", ".n", ".ratio", ".upper"])
FIELDS = ("prompt", "aspect_ratio", "resolution", "n", "negative_prompt", "image")


def leaves(roots: list[str]) -> st.SearchStrategy[Any]:
    """A request leaf: a constant, a plain reference, or text of literals and references."""
    refs = st.tuples(st.sampled_from(roots), ATTRS).map("".join)
    text = st.lists(st.one_of(st.sampled_from(["A ", ", ", "-", " {", "}"]), refs.map(lambda r: "{{" + r + "}}")),
                    min_size=1, max_size=4).map("".join)
    return st.one_of(SCALARS, refs.map(lambda r: "{{ " + r + " }}"), refs.map(lambda r: "{{ " + r + " }}"), text, text)


@st.composite
def recipes(draw: st.DrawFn, plain: bool = False, app: str = "klingai/image-o1@0pbaxv40",
            fields: tuple[str, ...] = FIELDS) -> str:
    """A recipe; ``plain``: one most of whose jobs the app accepts (text values, the fields
    that take them), else anything (for ``app``, with its ``fields``, the first required)."""
    values = st.one_of(TEXT, NAMED.filter(lambda d: isinstance(d["text"], str))) if plain else VALUES
    axes = {name: draw(st.lists(values, min_size=1 + plain, max_size=4)) for name in AXES[:draw(st.integers(0, 3))]}
    matrix: dict[str, Any] = dict(axes)
    roots = [*axes, "v", "w", "recipe", "repeat_index"]
    if len(axes) >= 2 and draw(st.booleans()):
        first, second = list(axes)[:2]
        size = min(len(axes[first]), len(axes[second]))
        matrix[first], matrix[second] = axes[first][:size], axes[second][:size]
        matrix["zip"] = [[first, second]]
    if axes and draw(st.booleans()):
        matrix["include"] = draw(st.lists(st.dictionaries(st.sampled_from([*axes, "extra"]), values, min_size=1),
                                          max_size=2))
        roots += ["extra"] * any("extra" in entry for entry in matrix["include"])
    if axes and draw(st.booleans()):
        matrix["exclude"] = draw(st.lists(st.dictionaries(st.sampled_from(list(axes)), values, min_size=1),
                                          max_size=2))
    if plain:  # text for the prompt, constants or a reference for the rest
        texts = [r for r in roots if r != "w"] + ["w.text"]
        request = {"prompt": draw(st.lists(st.one_of(st.sampled_from(["A ", ", "]),
                                                     st.sampled_from(texts).map(lambda r: "{{" + r + "}}")),
                                           min_size=1, max_size=4).map("".join))}
        optional = {"aspect_ratio": st.one_of(st.just("1:1"), st.just("{{ w.ratio }}"), st.just("{{ a }}")),
                    "n": st.one_of(st.just(1), st.just("{{ w.n }}")),
                    "resolution": st.one_of(st.just("2k"), st.just("{{ c }}")),
                    "negative_prompt": st.one_of(st.none(), st.sampled_from(texts).map(lambda r: "{{" + r + "}}"))}
        for name in draw(st.lists(st.sampled_from(list(optional)), unique=True, max_size=3)):
            request[name] = draw(optional[name])
    else:
        chosen = draw(st.lists(st.sampled_from(fields[1:]), unique=True, max_size=4))
        request = {f: draw(leaves(roots)) for f in (fields[0], *chosen)}
    doc: dict[str, Any] = {"vars": {"v": draw(values), "w": draw(NAMED)}, "input": request,
                           "repeat": draw(st.sampled_from([1, 1, 2])), "budget": {"max_usd": 100}}
    if matrix:
        doc["matrix"] = matrix
    filename = draw(st.sampled_from([None, None, "{{ job_id }}", "{{ a }}", "{{ a }}/{{ short_key }}",
                                     "{{ a.name }}-x", "{{ b }}_{{ repeat_index }}_{{ image_index }}",
                                     "{{ recipe }}-{{ short_key }}", "fixed", "{{ job_id|upper }}",
                                     "{{ short_key }}/../x", " {{ job_id }} ", "{{ w.text }}-{{ short_key }}"]))
    if filename is not None:
        doc["output"] = {"filename": filename}
    return f"version: 1\napp: {app}\n" + "".join(f"{k}: {json.dumps(v)}\n" for k, v in doc.items())


def outcome(path: Path) -> Any:
    """Everything a plan says, or every error it raises."""
    try:
        p = plan_file(path)
    except RecipeError as exc:
        return ("error", [str(d) for d in exc.diagnostics], exc.total)
    except Exception as exc:  # (a bug, but the same either way)
        return ("raised", type(exc).__name__, str(exc))
    jobs = [(j.id, j.key, j.output_name, j.units, j.cost, j.repeat_index, j.label, j.combination.values,
             j.combination.origins) for j in p.jobs]
    assert list(_tally(p.jobs).items()) == list(_tally_by_label(p.jobs).items())  # the shortcut, against a loop
    return ("plan", jobs, [str(w) for w in p.warnings], p.total_cost, p.total_units, p.collapsed, p.breakdown())


def without_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build.Kernel, "build", classmethod(lambda *_args: None))


def same_either_way(path: Path) -> None:
    fast = outcome(path)
    with pytest.MonkeyPatch.context() as patch:
        without_kernel(patch)
        slow = outcome(path)
    assert repr(fast) == repr(slow)  # repr: 1, 1.0 and True stay apart


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=recipes())
def test_the_kernel_plans_what_the_general_path_plans(write: WriteRecipe, text: str) -> None:
    same_either_way(write(text))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=recipes(plain=True))
def test_the_kernel_plans_plain_recipes_as_the_general_path_does(write: WriteRecipe, text: str) -> None:
    same_either_way(write(text))


OTHER_APPS = {  # a price per run; a range of prices, a schema with what plainly_valid leaves to jsonschema; rates
    "elevenlabs/sound-effects": ("text", "duration_seconds", "prompt_influence"),
    "google/gemini-2-5-flash-image": ("prompt", "num_images", "aspect_ratio", "temperature", "top_k"),
    "elevenlabs/tts": ("text", "voice", "model", "stability"),
}


@pytest.mark.parametrize("app", list(OTHER_APPS))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_kernel_plans_for_other_apps_what_the_general_path_plans(write: WriteRecipe, app: str,
                                                                      data: st.DataObject) -> None:
    same_either_way(write(data.draw(recipes(app=app, fields=OTHER_APPS[app]))))


BENCH = HEAD + """\
vars:
  quality: sharp focus
matrix:
  subject: [mug, lamp, "a vase"]
  style:
    - {name: noir, text: 'in film noir'}
    - {name: pop, text: 'in pop art'}
  ratio: ["16:9", "1:1"]
  resolution: [1k, 2k]
input:
  prompt: "A product photo of {{ subject }}, {{ style.text }}, {{ quality }}"
  aspect_ratio: "{{ ratio }}"
  resolution: "{{ resolution }}"
  n: 1
"""


def test_a_plain_recipe_goes_through_the_kernel_only(write: WriteRecipe, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(BENCH)
    expected = outcome(path)

    def general(*_args: Any) -> None:
        raise AssertionError("a job of a plain recipe went through the general path")

    monkeypatch.setattr(build.Builder, "job", general)
    assert outcome(path) == expected
    assert len(expected[1]) == 24


def test_jobs_the_kernel_cannot_vouch_for_go_through_the_general_path(write: WriteRecipe) -> None:
    """A refused value, an attribute that is not a mapping key."""
    path = write(HEAD + """\
matrix:
  s: [mug, {name: lamp, text: a lamp}]
  r: ["1:1", "5:4"]
input:
  prompt: "{{ s.text }}"
  aspect_ratio: "{{ r }}"
""")
    with pytest.raises(RecipeError) as info:
        plan_file(path)
    assert [str(d) for d in info.value.diagnostics] == [
        "r.yaml:5:14: [s=lamp, r=5:4] input.aspect_ratio: '5:4' is not one of: 16:9, 9:16, 1:1, 4:3, 3:4, 3:2, "
        "2:3, 21:9",
        "r.yaml:7:11: [s=mug, r=1:1] input.prompt: 's' has no attribute 'text' (and 1 more combination)",
    ]


def test_the_kernel_is_not_built_for_templates_jinja_must_run(write: WriteRecipe) -> None:
    from kling_pipeline.core.loading import load_recipe
    from kling_pipeline.core.render import TemplateSet, make_environment
    from kling_pipeline.core.schemas import load_app
    from kling_pipeline.core.validate import RequestValidator
    from kling_pipeline.core.yamlsrc import Node

    recipe = load_recipe(write(HEAD + "input:\n  prompt: \"{{ 'x'|upper }}\"\n"))
    app = load_app(recipe.app)
    env = make_environment()
    templates = TemplateSet(env, recipe.input)
    name = TemplateSet(env, Node({"filename": Node("x", recipe.input_pos)}, recipe.input_pos), "output")
    kernel = Kernel.build(recipe.name, recipe.vars, templates, name.leaves[("filename",)],
                          RequestValidator(app.input_schema), app.pricing, str(recipe.app), app.returned_cap)
    assert kernel is None


def test_make_job_makes_the_job_the_dataclass_makes() -> None:
    import dataclasses

    from kling_pipeline.core.jobs import MADE_FIELDS, Job, make_job
    from kling_pipeline.core.matrix import Combination

    assert tuple(f.name for f in dataclasses.fields(Job)) == MADE_FIELDS
    combo = Combination({"s": "mug"}, {"s": None}, {"s": "mug"})  # type: ignore[dict-item]
    args = ("mug", "ab" * 32, combo, 1, 2, 5_600_000, "mug_abababab_0", True)
    made, built = make_job(*args), Job(*args)
    assert made == built and repr(made) == repr(built)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.id = "x"  # type: ignore[misc]


def test_a_plan_leaves_no_cycles_for_the_garbage_collector(write: WriteRecipe) -> None:
    """The command pauses the collector while it plans (cli._plan.gc_paused): that is free only
    if a plan leaves nothing that only the collector can free."""
    import gc

    path = write(BENCH)
    first = plan_file(path)  # caches warmed up; kept: a plan's Jinja environment is a cycle once it is dropped
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        second = plan_file(path)
        assert gc.collect() == 0
        assert len(first.jobs) == len(second.jobs) == 24
    finally:
        if was:
            gc.enable()
