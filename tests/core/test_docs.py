"""docs/recipes.md says what the code does: its examples are run here."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from kling_pipeline.core.appstore import SchemaStore, StoredApp
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


# --- Pipelines -------------------------------------------------------------------------------------

PIPELINES = DOC[DOC.index("\n## Pipelines\n"):DOC.index("\n## Commands\n")]
PIPELINE_BLOCKS = re.findall(r"```(\w+)\n(.*?)```", PIPELINES, re.DOTALL)


def pipeline_blocks(kind: str) -> list[str]:
    return [text for k, text in PIPELINE_BLOCKS if k == kind]


def _uncommented(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("#")]


def test_the_pipeline_example_is_the_shipped_recipe() -> None:
    example = next(b for b in pipeline_blocks("yaml") if "name: pipeline\n" in b)
    assert _uncommented(example) == _uncommented((ROOT / "recipes/pipeline.yaml").read_text(encoding="utf-8"))


def test_the_pipeline_commands_print_what_the_docs_show(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    shown = [found for console in pipeline_blocks("console")
             for found in re.findall(r"^\$ kling-pipeline (.*)\n((?:(?!\$ ).*\n)*)", console, re.MULTILINE)]
    assert [command.split()[0] for command, _ in shown] == ["plan", "validate", "validate"]
    for command, expected in shown:
        code, out, err = cli(*command.split())
        assert (code, out + err) == (2 if err else 0, expected)


# (text in recipes/pipeline.yaml, what it is changed to, the first line validate prints)
PIPELINE_MISTAKES = [
    ("    needs: draft\n", "    needs: drafts\n",
     "recipes/pipeline.yaml:29:12: needs: there is no stage 'drafts'; did you mean 'draft'?"),
    ("  draft:\n", "  draft:\n    needs: animate\n",
     "recipes/pipeline.yaml:30:12: stages need each other in a cycle: draft needs animate needs refine needs draft; "
     "remove one of these needs (a chain starts at a stage without needs)"),
    ('image: "{{ draft.image }}"', 'image: "{{ draft.imagez }}"',
     "recipes/pipeline.yaml:34:14: input.image: draft (klingai/image-o1) has no output or axis 'imagez'; did you "
     "mean draft.image? (outputs: image, images; axes: subject)"),
    ("where: {finish: glossy}", "where: {finsh: glossy}",
     "recipes/pipeline.yaml:40:13: where: 'refine' and the stages it needs have no axis 'finsh'; did you mean "
     "'finish'?"),
    ("where: {finish: glossy}", "where: {finish: shiny}",
     "recipes/pipeline.yaml:40:21: where: no job of 'refine' has finish=shiny (values: glossy, matte)"),
    ("The {{ refine.subject }} turns", "The {{ refine.image }} turns",
     "recipes/pipeline.yaml:42:15: input.prompt: refine.image is a file: it can only be the whole value of a file "
     "field of klingai/video-o1 (image, end_image, reference_images, reference_video), as '{{ refine.image }}'"),
    ('      image: "{{ refine.image }}"', '      reference_video: "{{ refine.image }}"',
     "recipes/pipeline.yaml:43:24: input.reference_video takes a video; refine.image is an image: read it into "
     "image, end_image, reference_images"),
    ('      image: "{{ refine.image }}"', '      image: "{{ refine.input.image }}"',
     "recipes/pipeline.yaml:43:14: input.image: reads an output of 'draft' through 'refine' (refine.input); a stage "
     "reads only the outputs of the stage it needs: read an output of 'refine' itself (refine.image, "
     "refine.images), or add a stage that needs 'draft'"),
]


def test_the_pipeline_messages_are_all_checked() -> None:
    (block,) = [b for b in pipeline_blocks("text") if b.startswith("recipes/pipeline.yaml:")]
    assert block.splitlines() == [message for _, _, message in PIPELINE_MISTAKES]


@pytest.mark.parametrize(("old", "new", "message"), PIPELINE_MISTAKES)
def test_the_documented_pipeline_messages_are_what_validate_prints(write: WriteRecipe, old: str, new: str,
                                                                  message: str) -> None:
    shipped = (ROOT / "recipes/pipeline.yaml").read_text(encoding="utf-8")
    assert shipped.count(old) == 1
    write(shipped.replace(old, new), "recipes/pipeline.yaml")
    code, _, err = cli("validate", "recipes/pipeline.yaml")
    assert (code, err.splitlines()[0]) == (2, message)


def test_the_fan_out_example_plans_the_jobs_it_says(write: WriteRecipe) -> None:
    (example,) = [b for b in pipeline_blocks("yaml") if "sketch:" in b]
    p = ok(write(example))
    count = int(re.findall(r"= (\d+) jobs", example)[0])
    assert [(sp.name, len(sp.plan.jobs)) for sp in p.stages] == [("sketch", 2), ("refine", 6), ("speak", 2)]
    assert len(p.jobs) == count
    assert [j.id for j in p.stages[1].plan.jobs][::3] == ["mug.0", "lamp.0"]
    assert p.stages[1].plan.jobs[-1].id == "lamp.2" and "lamp.2" in example
    # the speeches are counted at the most text takes: 40,000 characters at $0.00017, "$6.80 a job"
    assert [j.cost for j in p.stages[2].plan.jobs] == [680_000_000] * 2
    assert "40,000 characters, $6.80 a job" in PIPELINES.replace("\n", " ")
    assert [w.message.split(":")[0] for w in p.warnings] == ["input.text reads sketch.description, whose length is "
                                                             "known only once sketch has run"]


def test_the_only_examples_narrow_as_they_say(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    def per_stage(only: dict[str, set[str]]) -> list[int]:
        return [len(sp.plan.jobs) for sp in ok(Path("recipes/pipeline.yaml"), only=only).stages]

    assert per_stage({"subject": {"ceramic mug"}}) == [1, 2, 1]  # "1 draft, 2 refinements, 1 video"
    assert per_stage({"finish": {"matte"}}) == [2, 2, 0]  # "both drafts ... nothing to take"
    assert per_stage({"draft": {"ceramic_mug"}}) == [2, 2, 1]  # "the drafts are planned whole"
    for flag in ('--only "subject=ceramic mug"', "--only finish=matte", "--only draft=ceramic_mug"):
        assert flag in PIPELINES


def test_the_unbounded_fan_out_message_is_what_validate_prints(write: WriteRecipe) -> None:
    (block,) = [b for b in pipeline_blocks("text") if b.startswith("storyboard.yaml:")]
    frames = {"type": "array", "items": {"type": "string", "format": "file", "contentMediaType": "image/png"}}
    stored = StoredApp("acme/storyboard", "v1", "id1", "Storyboard", "2026-11-27T09:00:00Z", "https://example.invalid",
                       True, ("v1",), {"type": "object", "properties": {"prompt": {"type": "string"},
                                                                         "duration": {"type": "integer"}}},
                       {"type": "object", "properties": {"frames": frames}},
                       {"usd_per_unit": "0.05", "unit": "second", "quantity_field": "duration"}, "app document")
    path = SchemaStore(Path("kling-schemas")).file_for("acme/storyboard", "v1")
    path.parent.mkdir(parents=True)
    path.write_bytes(stored.encode())
    write("""\
version: 1
app: klingai/image-o1@0pbaxv40
stages:
  shots:
    app: acme/storyboard@v1
    matrix: {subject: [mug, lamp]}
    input: {prompt: "A {{ subject }}", duration: 8}
  refine:
    needs: shots
    input:
      prompt: refined
      image: "{{ shots.frames }}"
""", "storyboard.yaml")
    code, _, err = cli("validate", "storyboard.yaml")
    assert (code, err.splitlines()[:-1]) == (2, block.splitlines())
