"""docs/recipes.md says what the code does: its examples are run here."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from kling_pipeline.views.planview import PLAN_FORMAT

from .conftest import WriteRecipe
from .util import cli, combos, ok

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs/recipes.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", DOC, re.DOTALL)


def blocks(kind: str) -> list[str]:
    return [text for k, text in BLOCKS if k == kind]


def test_the_first_example_is_the_quickstart_recipe(write: WriteRecipe) -> None:
    example = blocks("yaml")[0]
    shipped = (ROOT / "recipes/quickstart.yaml").read_text(encoding="utf-8")
    def strip(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith("#")]

    assert strip(example) == strip(shipped)
    assert len(ok(write(example, "quickstart.yaml")).jobs) == 4


def test_the_console_example_is_what_the_commands_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    console = blocks("console")[0]
    for command, expected in re.findall(r"^\$ kling-pipeline (.*)\n((?:(?!\$ ).*\n)*)", console, re.MULTILINE):
        code, out, err = cli(*command.split())
        assert (code, err) == (0, "")
        assert out == expected


MATRIX_EXAMPLES = [b for b in blocks("yaml") if b.startswith("matrix:\n") and re.search(r"(\d+) jobs", b)
                   and all(line.startswith((" ", "#")) for line in b.splitlines()[1:])]


def test_the_matrix_examples_are_all_found() -> None:
    assert len(MATRIX_EXAMPLES) == 5  # exclude, include, zip, a filter, a list of filters


@pytest.mark.parametrize("example", MATRIX_EXAMPLES, ids=["exclude", "include", "zip", "filter", "filters"])
def test_matrix_examples_give_the_jobs_they_say(example: str, write: WriteRecipe) -> None:
    count = int(re.findall(r"(\d+) jobs", example)[-1])
    body = textwrap.dedent("\n".join(example.splitlines()[1:]))
    if "filter:" not in body:
        assert len(combos(body)) == count
        return
    keys = re.findall(r"^\s*(\w+): \[", body, re.MULTILINE)
    prompt = " ".join(f"{{{{ {k} }}}}" for k in keys)
    path = write(f"version: 1\napp: klingai/image-o1\ninput: {{prompt: '{prompt}'}}\n" + example)
    assert len(ok(path).jobs) == count


def test_the_fruit_example_lists_its_exact_combinations() -> None:
    example = next(b for b in MATRIX_EXAMPLES if "fruit" in b)
    listed = [line.strip("# ").strip() for line in example.splitlines() if line.startswith("#   {")]
    body = textwrap.dedent("\n".join(example.splitlines()[1:]))
    shown = ["{" + ", ".join(f"{k}: {v}" for k, v in c.items()) + "}" for c in combos(body)]
    assert shown == listed


def test_the_json_example_is_the_quickstart_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    documented = json.loads(blocks("json")[0])
    code, out, _ = cli("plan", "recipes/quickstart.yaml", "--json")
    actual = json.loads(out)
    assert code == 0
    assert documented["format"] == PLAN_FORMAT
    assert documented == {**actual, "jobs": actual["jobs"][:1]}


def test_every_json_field_is_documented(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    doc = json.loads(cli("plan", "recipes/quickstart.yaml", "--json")[1])
    table = DOC[DOC.index("| field | meaning |"):]
    for key, value in doc.items():
        assert f"`{key}" in table, key
        if isinstance(value, dict) and key != "breakdown":
            for sub in value:
                assert f"`{key}.{sub}`" in table or f"`{sub}`" in table, f"{key}.{sub}"
    for field in doc["jobs"][0]:
        assert f"`{field}`" in table, field


BOUNDS_EXAMPLES = [  # (recipe written as sweep.yaml, the message the docs show for it)
    ("version: 1\napp: klingai/image-o1@0pbaxv40\nmatrix:\n  subject: [mug]\nvars: {a: 1}\n\n\ninput:\n"
     "  prompt: \"{{ range(99999)|join('x'*999999) }}\"\n",
     "sweep.yaml:9:11: [subject=mug] input.prompt: template error: the filter 'join' would build a value of "
     "99,997,900,002 items (at most 1,000,000)"),
    ("version: 1\napp: klingai/image-o1@0pbaxv40\ninput:\n  prompt: x\n  aspect_ratio: \"{{ range }}\"\n",
     "sweep.yaml:5:17: [] input.aspect_ratio: renders the global 'range' itself, not data (text, a number, a "
     "boolean, null, a list or a mapping)"),
    ("version: 1\napp: klingai/image-o1@0pbaxv40\nmatrix:\n" + "".join(f"  a{i}: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n"
                                                                      for i in range(8)) + "input: {prompt: x}\n",
     "sweep.yaml:3:1: the sweep makes 100,000,000 jobs (10 x 10 x 10 x 10 x 10 x 10 x 10 x 10 combinations), more "
     "than the limit of 500,000; narrow it, or raise the limit with --max-jobs N"),
    ("version: 1\napp: klingai/image-o1@0pbaxv40\ninput:\n  prompt: x\n  aspect_ratio: 16:9\n",
     'sweep.yaml:5:17: 16:9 is read as the number 969 (YAML 1.1 reads N:M as a base-60 number); write "16:9" in '
     "quotes for the text"),
]


@pytest.mark.parametrize(("recipe", "message"), BOUNDS_EXAMPLES)
def test_the_documented_bound_messages_are_what_validate_prints(write: WriteRecipe, recipe: str,
                                                                message: str) -> None:
    assert any(message == line for block in blocks("text") for line in block.splitlines())
    write(recipe, "sweep.yaml")
    code, _, err = cli("validate", "sweep.yaml")
    assert (code, err.splitlines()[0]) == (2, message)
