"""Recipe shape: keys, types and names, every problem reported at once with its place."""

from __future__ import annotations

import pytest

from kling_pipeline import load_recipe
from kling_pipeline.core.errors import RecipeError

from .conftest import WriteRecipe
from .util import HEAD, errors, ok

TOP = ("version, name, description, app, extends, vars, matrix, input, repeat, output, budget, "
       "concurrency, price, webhook")


def test_a_minimal_recipe_loads_with_defaults(write: WriteRecipe) -> None:
    r = load_recipe(write(HEAD + "input: {prompt: x}\n", "my-sweep.yaml"))
    assert (r.name, r.description, str(r.app), r.repeat, r.concurrency) == ("my-sweep", "", "klingai/image-o1@0pbaxv40",
                                                                           1, 8)
    assert (r.budget_microcents, r.price_microcents, r.webhook) == (None, None, None)
    assert r.output.filename == "{{ job_id }}_{{ short_key }}_{{ image_index }}"


@pytest.mark.parametrize(("section", "line", "message"), [
    ("versoin: 1\n", "r.yaml:4:1", f"unknown key 'versoin' in the recipe; did you mean 'version'? (allowed: {TOP})"),
    ("matrx: {}\n", "r.yaml:4:1", f"unknown key 'matrx' in the recipe; did you mean 'matrix'? (allowed: {TOP})"),
    ("colour: red\n", "r.yaml:4:1", f"unknown key 'colour' in the recipe (allowed: {TOP})"),
    ("output:\n  filenme: x\n", "r.yaml:5:3",
     "unknown key 'filenme' in output; did you mean 'filename'? (allowed: dir, filename)"),
    ("budget:\n  max: 3\n", "r.yaml:5:3", "unknown key 'max' in budget; did you mean 'max_usd'? (allowed: max_usd)"),
    ("price:\n  usd_per_img: 0.03\n", "r.yaml:5:3",
     "unknown key 'usd_per_img' in price; did you mean 'usd_per_image'? (allowed: usd_per_unit, usd_per_image)"),
    ("matrix:\n  a: [1]\n  exlcude: []\n", "r.yaml:6:3", "unknown key 'exlcude' in matrix; did you mean 'exclude'?"),
])
def test_unknown_keys_are_errors_with_a_suggestion(write: WriteRecipe, section: str, line: str, message: str) -> None:
    path = write(HEAD + "input: {prompt: x}\n" + section)
    assert errors(path) == [f"{line}: {message}"]


def test_missing_required_keys(write: WriteRecipe) -> None:
    path = write("name: sweep\n")
    assert errors(path) == [
        "r.yaml:1:1: missing required key 'app' (for example 'app: klingai/image-o1@0pbaxv40')",
        "r.yaml:1:1: missing required key 'input' (the request template, e.g. 'input: {prompt: ...}')",
        "r.yaml:1:1: missing required key 'version' (write 'version: 1')",
    ]


@pytest.mark.parametrize(("version", "shown"), [("2", "2"), ("'1'", "'1'"), ("true", "true"), ("null", "None")])
def test_only_version_1_is_read(write: WriteRecipe, version: str, shown: str) -> None:
    path = write(f"version: {version}\napp: klingai/image-o1@0pbaxv40\ninput: {{prompt: x}}\n")
    assert errors(path) == [f"r.yaml:1:10: unsupported recipe version {shown}; this tool reads version 1"]


@pytest.mark.parametrize(("app", "message"), [
    ("klingai", "app must look like 'namespace/name' or 'namespace/name@version', got 'klingai'"),
    ("klingai/image-o1/x", "app must look like 'namespace/name' or 'namespace/name@version', got 'klingai/image-o1/x'"),
    ("'klingai/image-o1@'", "empty version after '@' in 'klingai/image-o1@'"),
    ("'klingai/image o1'", "app must look like 'namespace/name' or 'namespace/name@version', got 'klingai/image o1'"),
    ("klingai/image-o1:edit", "app functions (':name') are not supported: 'klingai/image-o1:edit'"),
    ("klingai/image-o1@v1:edit", "app functions (':name') are not supported: 'klingai/image-o1@v1:edit'"),
    ("klingai/image-v9", "no schema for app 'klingai/image-v9': run `kling-pipeline schema pull klingai/image-v9` "
                         "to fetch it (bundled apps: elevenlabs/sound-effects, elevenlabs/tts, "
                         "google/gemini-2-5-flash-image, klingai/image-o1, klingai/video-o1)"),
    ("42", "app must be a string, got an integer"),
])
def test_bad_app_references(write: WriteRecipe, app: str, message: str) -> None:
    path = write(f"version: 1\napp: {app}\ninput: {{prompt: x}}\n")
    assert errors(path) == [f"r.yaml:2:6: {message}"]


@pytest.mark.parametrize("name", ["'my sweep'", "-dash", "a/b", "'..'"])
def test_bad_names(write: WriteRecipe, name: str) -> None:
    path = write(HEAD + f"name: {name}\ninput: {{prompt: x}}\n")
    shown = name.strip("'")
    assert errors(path) == [f"r.yaml:3:7: name {shown!r} may hold only letters, digits, '.', '_' and '-' "
                            "(it names the output directory)"]


def test_wrong_types_everywhere_at_once(write: WriteRecipe) -> None:
    path = write(HEAD + """\
name: 5
description: [a]
vars: [a, b]
matrix: [a]
input: "a prompt"
repeat: "2"
output: {dir: 3, filename: ""}
budget: 5
price: {usd_per_image: [1]}
concurrency: 0
webhook: ftp://example.com/hook
""")
    assert errors(path) == [
        "r.yaml:3:7: name must be a string, got an integer",
        "r.yaml:4:14: description must be a string, got a list",
        "r.yaml:5:7: vars must be a mapping, got a list",
        "r.yaml:6:9: matrix must be a mapping, got a list",
        "r.yaml:7:8: input must be a mapping of request fields, got a string",
        "r.yaml:8:9: repeat must be an integer, got a string",
        "r.yaml:9:15: output.dir must be a string, got an integer",
        "r.yaml:9:28: output.filename must not be empty",
        "r.yaml:10:9: budget must be a mapping, got an integer",
        "r.yaml:11:24: price.usd_per_image must be an amount in USD, got a list",
        "r.yaml:12:14: concurrency must be at least 1, got 0",
        "r.yaml:13:10: webhook must be an http:// or https:// URL",
    ]


@pytest.mark.parametrize(("amount", "message"), [
    ("-1", "budget.max_usd: not a non-negative amount in USD: -1"),
    ("abc", "budget.max_usd: not an amount in USD: 'abc'"),
    ("0.000000001", "budget.max_usd: more precision than a microcent: 1e-09"),
    ("true", "budget.max_usd must be an amount in USD, got a boolean"),
])
def test_bad_budget_amounts(write: WriteRecipe, amount: str, message: str) -> None:
    path = write(HEAD + f"input: {{prompt: x}}\nbudget:\n  max_usd: {amount}\n")
    assert errors(path) == [f"r.yaml:5:12: {message}"]


@pytest.mark.parametrize(("amount", "microcents"), [("2", 200_000_000), ("0.5", 50_000_000), ("'$1.25'", 125_000_000),
                                                    ("0", 0)])
def test_budget_amounts_are_exact(write: WriteRecipe, amount: str, microcents: int) -> None:
    r = load_recipe(write(HEAD + f"input: {{prompt: x}}\nbudget: {{max_usd: {amount}}}\n"))
    assert r.budget_microcents == microcents


@pytest.mark.parametrize(("where", "text", "message"), [
    ("axis", "matrix:\n  recipe: [a]\n", "r.yaml:5:3: matrix axis 'recipe' is reserved; choose another name"),
    ("axis", "matrix:\n  repeat_index: [1]\n",
     "r.yaml:5:3: matrix axis 'repeat_index' is reserved; choose another name"),
    ("axis", "matrix:\n  job_id: [1]\n", "r.yaml:5:3: matrix axis 'job_id' is reserved; choose another name"),
    ("axis", "matrix:\n  2x: [a]\n",
     "r.yaml:5:3: matrix axis '2x' must be a name made of letters, digits and '_' (it is used as a template variable)"),
    ("axis", "matrix:\n  my-style: [a]\n", "r.yaml:5:3: matrix axis 'my-style' must be a name made of letters, digits "
                                             "and '_' (it is used as a template variable)"),
    ("var", "vars:\n  short_key: a\n", "r.yaml:5:3: var 'short_key' is reserved; choose another name"),
    ("var", "vars:\n  a b: 1\n",
     "r.yaml:5:3: var 'a b' must be a name made of letters, digits and '_' (it is used as a template variable)"),
    ("include", "matrix:\n  include:\n    - loop: 1\n",
     "r.yaml:6:7: include key 'loop' is reserved; choose another name"),
])
def test_reserved_and_invalid_names(write: WriteRecipe, where: str, text: str, message: str) -> None:
    path = write(HEAD + "input: {prompt: x}\n" + text)
    assert errors(path) == [message]


def test_axis_shadowing_a_var_is_an_error(write: WriteRecipe) -> None:
    path = write(HEAD + "input: {prompt: x}\nvars: {style: noir}\nmatrix:\n  style: [pop]\n")
    assert errors(path) == ["r.yaml:6:3: matrix axis 'style' shadows the var of the same name"]


def test_every_problem_is_reported_at_once_in_file_order(write: WriteRecipe) -> None:
    path = write("""\
version: 3
app: klingai
matrix:
  recipe: [a]
input:
  prompt: "{{ subjet }}"
repeat: 0
""")
    assert errors(path) == [
        "r.yaml:1:10: unsupported recipe version 3; this tool reads version 1",
        "r.yaml:2:6: app must look like 'namespace/name' or 'namespace/name@version', got 'klingai'",
        "r.yaml:4:3: matrix axis 'recipe' is reserved; choose another name",
        "r.yaml:7:9: repeat must be at least 1, got 0",
    ]


def test_load_recipe_raises_every_shape_problem(write: WriteRecipe) -> None:
    path = write(HEAD + "input: {prompt: x}\nrepeat: 0\nconcurrency: -1\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert str(info.value) == ("r.yaml:4:9: repeat must be at least 1, got 0\n"
                               "r.yaml:5:14: concurrency must be at least 1, got -1")


def test_shape_and_template_problems_are_reported_together(write: WriteRecipe) -> None:
    """plan_file adds what can be found without expanding (undefined names, unknown
    fields) to the shape problems, so one run shows everything."""
    path = write(HEAD + "repeat: 0\ninput:\n  prompt: \"{{ subjet }}\"\n  num_images: 2\nmatrix:\n  subject: [a]\n")
    assert errors(path) == [
        "r.yaml:3:9: repeat must be at least 1, got 0",
        "r.yaml:5:11: input.prompt: 'subjet' is undefined; did you mean 'subject'? "
        "(known names: recipe, repeat_index, subject)",
        "r.yaml:6:3: input.num_images: unknown field for this app; did you mean 'n'? "
        "(fields: prompt, image, negative_prompt, aspect_ratio, resolution, n)",
    ]


def test_description_and_webhook_are_kept(write: WriteRecipe) -> None:
    p = ok(write(HEAD + "description: Mugs for the shop\nwebhook: https://example.com/h?t=1\ninput: {prompt: x}\n"))
    assert (p.recipe.description, p.recipe.webhook) == ("Mugs for the shop", "https://example.com/h?t=1")
