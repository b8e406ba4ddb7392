"""The public Python API: ``from kling_pipeline import load_recipe, plan``."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import kling_pipeline
from kling_pipeline.core import errors, jobs, loading, planning, recipe

from .conftest import WriteRecipe

PUBLIC = ["ApiError", "ConfigError", "Diagnostic", "Job", "JobOutcome", "KlingError", "LockError", "Plan", "Position",
          "Progress", "Recipe", "RecipeError", "RunEntry", "RunResult", "Status", "UsageError", "__version__",
          "collect", "collect_async", "history", "load_recipe", "plan", "plan_file", "run_sweep", "run_sweep_async",
          "status"]


def test_all_is_the_curated_list() -> None:
    assert sorted(kling_pipeline.__all__) == sorted(PUBLIC)


def test_every_exported_name_resolves_to_its_definition() -> None:
    from kling_pipeline.api import apierrors
    from kling_pipeline.config import profiles
    from kling_pipeline.notebook import results, sweep
    from kling_pipeline.store import lock
    from kling_pipeline.views import history, status

    where = {"Diagnostic": errors, "KlingError": errors, "Position": errors, "RecipeError": errors,
             "UsageError": errors, "Job": jobs, "load_recipe": loading, "Plan": planning, "plan": planning,
             "plan_file": planning, "Recipe": recipe, "ApiError": apierrors, "ConfigError": profiles,
             "LockError": lock, "JobOutcome": results, "Progress": results, "RunResult": results, "RunEntry": history,
             "Status": status, "collect": sweep, "collect_async": sweep, "history": sweep, "run_sweep": sweep,
             "run_sweep_async": sweep, "status": sweep}
    assert set(where) | {"__version__"} == set(PUBLIC)
    for name, module in where.items():
        assert getattr(kling_pipeline, name) is getattr(module, name)
    assert isinstance(kling_pipeline.__version__, str)


def test_the_public_namespace_is_exactly_all() -> None:
    """Like httpx's test_exported_members: what the package shows is what __all__ says
    (submodules aside: importing ``kling_pipeline.x`` always binds ``x``)."""
    public = {name for name in dir(kling_pipeline)
              if not name.startswith("_") and not inspect.ismodule(getattr(kling_pipeline, name))}
    assert public | {"__version__"} == set(kling_pipeline.__all__)


def test_star_import_gives_all() -> None:
    namespace: dict[str, object] = {}
    exec("from kling_pipeline import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(kling_pipeline.__all__)


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError) as info:
        kling_pipeline.nope  # noqa: B018
    assert str(info.value) == "module 'kling_pipeline' has no attribute 'nope'"


def test_import_is_cheap() -> None:
    """``import kling_pipeline`` loads no HTTP client, event loop, server, template engine or validator."""
    heavy = ("httpx", "anyio", "uvicorn", "jinja2", "jsonschema", "yaml")
    code = f"import sys, kling_pipeline; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout == "[]\n"


def test_the_api_round_trip(write: WriteRecipe) -> None:
    from kling_pipeline import Plan, Recipe, load_recipe, plan

    path = write("version: 1\napp: klingai/image-o1@0pbaxv40\nmatrix:\n  s: [a, b]\ninput: {prompt: '{{ s }}'}\n")
    r = load_recipe(path)
    assert isinstance(r, Recipe)
    p = plan(r)
    assert isinstance(p, Plan)
    assert ([j.id for j in p.jobs], p.total_cost) == (["a", "b"], 5_600_000)
    assert [j.key for j in plan(load_recipe(Path(str(path)))).jobs] == [j.key for j in p.jobs]


def test_a_recipe_loads_from_a_mapping_or_yaml_text_like_a_file(write: WriteRecipe, tmp_path: Path) -> None:
    from kling_pipeline import load_recipe, plan

    text = "version: 1\nname: r\napp: klingai/image-o1@0pbaxv40\nmatrix:\n  s: [a, b]\ninput: {prompt: '{{ s }}'}\n"
    from_file = plan(load_recipe(write(text)))
    data = {"version": 1, "name": "r", "app": "klingai/image-o1@0pbaxv40", "matrix": {"s": ("a", "b")},
            "input": {"prompt": "{{ s }}"}}
    from_dict = plan(load_recipe(data, base_dir=tmp_path))
    from_text = plan(load_recipe(text, base_dir=tmp_path))
    assert [j.key for j in from_dict.jobs] == [j.key for j in from_text.jobs] == [j.key for j in from_file.jobs]
    assert (from_dict.recipe.file, from_text.recipe.file) == ("<dict>", "<text>")  # (base_dir is the working dir)
    assert from_dict.output_dir == from_file.output_dir == from_text.output_dir
    elsewhere = load_recipe(data, base_dir=tmp_path / "sub")
    assert (elsewhere.file, plan(elsewhere).output_dir) == ("sub/<dict>", Path("sub/out/r"))


def test_a_mapping_that_is_not_recipe_data_is_a_recipe_error() -> None:
    from kling_pipeline import RecipeError, UsageError, load_recipe

    with pytest.raises(RecipeError) as info:
        load_recipe({"version": 1, "name": "r", "app": "klingai/image-o1", 3: "x",
                     "input": {"prompt": {1, 2}, "n": float("nan")}})
    assert str(info.value).splitlines() == [
        "<dict>: the recipe: key 3 is a int; keys are strings",
        "<dict>: input.prompt: a value of type set is not recipe data (use strings, numbers, booleans, None, lists "
        "and mappings)",
        "<dict>: input.n: nan is not a finite number"]
    with pytest.raises(RecipeError) as unnamed:
        load_recipe("version: 1\napp: klingai/image-o1\ninput: {prompt: x}\n")
    assert str(unnamed.value) == ("<text>:1:1: missing key 'name': a recipe given as text or a mapping has no file "
                                  "name to take its name from (the name names its output directory)")
    with pytest.raises(UsageError) as wrong:
        load_recipe(42)  # type: ignore[arg-type]
    assert str(wrong.value) == "a recipe is a file's path, YAML text or a mapping, not a int"


def test_only_takes_one_value_or_several(write: WriteRecipe) -> None:
    from kling_pipeline import UsageError, load_recipe, plan

    r = load_recipe(write("version: 1\napp: klingai/image-o1@0pbaxv40\nmatrix:\n  style: [watercolor, noir]\n"
                          "  k: [1, 2]\ninput: {prompt: '{{ style }}', n: '{{ k }}'}\n"))
    assert [j.id for j in plan(r, only={"style": "watercolor"}).jobs] == ["watercolor-1", "watercolor-2"]
    assert [j.id for j in plan(r, only={"style": ["noir"], "k": 2}).jobs] == ["noir-2"]
    assert [j.id for j in plan(r, only={"k": {1, "2"}, "style": ("noir",)}).jobs] == ["noir-1", "noir-2"]
    with pytest.raises(UsageError) as info:
        plan(r, only={"style": "pop"})
    assert str(info.value) == "--only style=pop: no combination has style=pop (values: watercolor, noir)"
