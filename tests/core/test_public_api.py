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

PUBLIC = ["Diagnostic", "Job", "KlingError", "Plan", "Position", "Recipe", "RecipeError", "UsageError",
          "__version__", "load_recipe", "plan", "plan_file"]


def test_all_is_the_curated_list() -> None:
    assert sorted(kling_pipeline.__all__) == sorted(PUBLIC)


def test_every_exported_name_resolves_to_its_definition() -> None:
    where = {"Diagnostic": errors, "KlingError": errors, "Position": errors, "RecipeError": errors,
             "UsageError": errors, "Job": jobs, "load_recipe": loading, "Plan": planning, "plan": planning,
             "plan_file": planning, "Recipe": recipe}
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
