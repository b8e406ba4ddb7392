"""Pipelines (recipes with ``stages``): every mistake a user can make, each at its
``file:line:col`` through ``validate``, and the plan of a valid chain — its jobs and exact
costs per stage, ``plan --json``, ``--only``, fan-out over a list output, value outputs.

Costs are integers in microcents (1 USD = 100,000,000): image-o1 $0.028 an image is
2_800_000; video-o1 std $0.084 a second is 8_400_000.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kling_pipeline import plan_file
from kling_pipeline.core.chain import TOKEN_PREFIX, parse_token
from kling_pipeline.core.stages import MAX_STAGES

from .conftest import WriteRecipe
from .util import cli

ROOT = Path(__file__).resolve().parents[2]
IMAGE = 2_800_000  # klingai/image-o1: one image
STD_SECOND = 8_400_000  # klingai/video-o1, mode std, no reference video: one second

# line 1..8; a stage appended below starts on line 9
DRAFT = """\
version: 1
app: klingai/image-o1@0pbaxv40
stages:
  draft:
    matrix:
      subject: [mug, lamp]
    input:
      prompt: "A {{ subject }}"
"""
# lines 9..13
REFINE = """\
  refine:
    needs: draft
    input:
      prompt: "{{ draft.input.prompt }}, refined"
      image: "{{ draft.image }}"
"""
# REFINE in two finishes: lines 9..14
FINISHES = REFINE.replace(", refined", ", {{ finish }}") + "    matrix: {finish: [matte, glossy]}\n"
# lines 14..21 after DRAFT + REFINE
ANIMATE = """\
  animate:
    app: klingai/video-o1@ef28809a
    needs: refine
    input:
      prompt: "The {{ refine.subject }} turns"
      image: "{{ refine.image }}"
      duration: 5
      mode: std
"""


def invalid(write: WriteRecipe, text: str, *flags: str) -> list[str]:
    """``validate`` on ``text``: exit 2, nothing on stdout; the error lines (the summary checked)."""
    write(text)
    code, out, err = cli("validate", "r.yaml", *flags)
    assert (code, out) == (2, ""), err
    lines = err.splitlines()
    n = len(lines) - 1
    assert lines[-1] == f"{n} error{'s' if n != 1 else ''} in r.yaml; nothing was sent"
    return lines[:-1]


def valid(write: WriteRecipe, text: str, *flags: str) -> str:
    write(text)
    code, out, err = cli("validate", "r.yaml", *flags)
    assert (code, err) == (0, ""), err
    return out


# --- needs ---------------------------------------------------------------------------------------


def test_a_valid_chain_validates(write: WriteRecipe) -> None:
    assert valid(write, DRAFT + REFINE + ANIMATE) == "r.yaml: ok — 6 jobs, $0.952\n"


def test_needs_an_unknown_stage_suggests_the_nearest(write: WriteRecipe) -> None:
    assert invalid(write, DRAFT + REFINE.replace("needs: draft", "needs: drafts")) == [
        "r.yaml:10:12: needs: there is no stage 'drafts'; did you mean 'draft'?"]


def test_needs_an_unknown_stage_lists_the_stages(write: WriteRecipe) -> None:
    assert invalid(write, DRAFT + REFINE.replace("needs: draft", "needs: upscale")) == [
        "r.yaml:10:12: needs: there is no stage 'upscale' (stages: draft, refine)"]


def test_a_stage_cannot_need_itself(write: WriteRecipe) -> None:
    assert invalid(write, DRAFT + REFINE.replace("needs: draft", "needs: refine")) == [
        "r.yaml:10:12: stage 'refine' cannot need itself"]


def test_a_cycle_of_two_stages(write: WriteRecipe) -> None:
    text = DRAFT.replace("  draft:\n", "  draft:\n    needs: refine\n") + REFINE
    # draft (line 4) needs refine (line 5); refine (line 10) needs draft (line 11): found closing at refine's
    assert invalid(write, text) == [
        "r.yaml:11:12: stages need each other in a cycle: draft needs refine needs draft; remove one of these "
        "needs (a chain starts at a stage without needs)"]


def test_a_cycle_of_three_stages(write: WriteRecipe) -> None:
    text = """\
version: 1
app: klingai/image-o1@0pbaxv40
stages:
  a:
    needs: c
    input: {prompt: "{{ c.job_id }}"}
  b:
    needs: a
    input: {prompt: "{{ a.job_id }}"}
  c:
    needs: b
    input: {prompt: "{{ b.job_id }}"}
"""
    assert invalid(write, text) == [
        "r.yaml:8:12: stages need each other in a cycle: a needs c needs b needs a; remove one of these needs "
        "(a chain starts at a stage without needs)"]


def test_a_cycle_below_a_root_stage_is_found_once(write: WriteRecipe) -> None:
    text = DRAFT + """\
  a:
    needs: b
    input: {prompt: "{{ b.job_id }}"}
  b:
    needs: a
    input: {prompt: "{{ a.job_id }}"}
  c:
    needs: b
    input: {prompt: "{{ b.job_id }}"}
"""
    assert invalid(write, text) == [
        "r.yaml:13:12: stages need each other in a cycle: a needs b needs a; remove one of these needs "
        "(a chain starts at a stage without needs)"]


@pytest.mark.parametrize(("needs", "message"), [
    ("[draft, refine]", "needs names one stage (a stage takes the outputs of one upstream stage; a stage without "
                        "needs starts a chain of its own)"),
    ("[]", "needs names one stage (a stage takes the outputs of one upstream stage; a stage without needs starts a "
           "chain of its own)"),
    ("3", "needs must name a stage, got an integer"),
    ("{stage: draft}", "needs must name a stage, got a mapping"),
])
def test_needs_names_one_stage(write: WriteRecipe, needs: str, message: str) -> None:
    text = DRAFT + REFINE + "  other:\n    needs: " + needs + "\n    input: {prompt: x}\n"
    assert invalid(write, text) == [f"r.yaml:15:12: {message}"]


def test_needs_as_a_list_of_one_is_the_stage(write: WriteRecipe) -> None:
    assert valid(write, DRAFT + REFINE.replace("needs: draft", "needs: [draft]")) == "r.yaml: ok — 4 jobs, $0.112\n"


# --- the shape of a pipeline -----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "message"), [
    ("1draft", "stage name '1draft' must be a name a template can use: letters, digits and '_', not starting "
               "with a digit"),
    ("my-stage", "stage name 'my-stage' must be a name a template can use: letters, digits and '_', not starting "
                 "with a digit"),
    ("recipe", "stage name 'recipe' is reserved (templates read 'recipe' as something else); choose another name"),
    ("loop", "stage name 'loop' is reserved (templates read 'loop' as something else); choose another name"),
])
def test_a_stage_name_is_a_template_name(write: WriteRecipe, name: str, message: str) -> None:
    assert invalid(write, DRAFT + f"  {name}:\n    input: {{prompt: x}}\n") == [f"r.yaml:9:3: {message}"]


def test_matrix_input_and_repeat_belong_to_stages_each_said_once(write: WriteRecipe) -> None:
    text = DRAFT.replace("stages:\n", "matrix:\n  style: [a]\ninput:\n  prompt: x\nrepeat: 2\nstages:\n")
    assert invalid(write, text) == [
        "r.yaml:3:1: 'matrix' belongs to a stage in a recipe with 'stages': write it under each stage",
        "r.yaml:5:1: 'input' belongs to a stage in a recipe with 'stages': write it under each stage",
        "r.yaml:7:1: 'repeat' belongs to a stage in a recipe with 'stages': write it under each stage",
    ]


def test_an_unknown_top_level_key_lists_what_a_pipeline_allows(write: WriteRecipe) -> None:
    assert invalid(write, DRAFT.replace("stages:\n", "stagse: {}\nstages:\n")) == [
        "r.yaml:3:1: unknown key 'stagse' in the pipeline; did you mean 'stages'? (allowed: version, name, "
        "description, app, vars, price, budget, concurrency, output, webhook, extends, stages)"]


def test_an_unknown_key_in_a_stage(write: WriteRecipe) -> None:
    assert invalid(write, DRAFT + "    budget: {max_usd: 1}\n") == [
        "r.yaml:9:5: unknown key 'budget' in stage 'draft' (allowed: description, app, vars, matrix, input, repeat, "
        "output, price, needs, where)"]


def test_output_filename_belongs_to_a_stage_and_output_dir_to_the_pipeline(write: WriteRecipe) -> None:
    text = DRAFT.replace("stages:\n", "output:\n  filename: '{{ job_id }}'\nstages:\n") + "    output: {dir: out}\n"
    assert invalid(write, text) == [
        "r.yaml:4:3: output.filename belongs to a stage in a recipe with 'stages': write it under each stage's "
        "'output' (output.dir stays here: each stage writes into <dir>/<stage>/)",
        "r.yaml:11:14: output.dir is the pipeline's (each stage writes into <dir>/<stage>/): set it at the top level",
    ]


@pytest.mark.parametrize(("stages", "message"), [
    ("{}", "stages must be a mapping of stage names to stages, e.g. 'stages: {draft: {...}}'"),
    ("[draft]", "stages must be a mapping of stage names to stages, e.g. 'stages: {draft: {...}}'"),
    ("{draft: 3}", None),
])
def test_stages_must_be_a_mapping_of_mappings(write: WriteRecipe, stages: str, message: str | None) -> None:
    got = invalid(write, f"version: 1\napp: klingai/image-o1@0pbaxv40\nstages: {stages}\n")
    assert got == [f"r.yaml:3:9: {message}"] if message else got == [
        "r.yaml:3:17: stage 'draft' must be a mapping (app, matrix, input, needs...), got an integer"]


def test_a_pipeline_has_at_most_32_stages(write: WriteRecipe) -> None:
    stages = "".join(f"  s{i}:\n    input: {{prompt: x{i}}}\n" for i in range(MAX_STAGES + 1))
    assert invalid(write, f"version: 1\napp: klingai/image-o1@0pbaxv40\nstages:\n{stages}") == [
        "r.yaml:4:3: a pipeline has at most 32 stages, this one has 33"]


# --- where ----------------------------------------------------------------------------------------


def test_where_without_needs(write: WriteRecipe) -> None:
    assert invalid(write, DRAFT + "    where: {subject: mug}\n") == [
        "r.yaml:9:5: where narrows what a stage takes from the stage it needs: add 'needs: <stage>'"]


def test_where_on_an_unknown_axis_suggests_the_nearest(write: WriteRecipe) -> None:
    assert invalid(write, DRAFT + REFINE + "    where: {subjet: mug}\n") == [
        "r.yaml:14:13: where: 'draft' and the stages it needs have no axis 'subjet'; did you mean 'subject'?"]


def test_where_on_an_unknown_axis_lists_the_axes_up_the_chain(write: WriteRecipe) -> None:
    text = DRAFT + FINISHES + ANIMATE + "    where: {color: red}\n"
    assert invalid(write, text) == [
        "r.yaml:23:13: where: 'refine' and the stages it needs have no axis 'color' (axes: finish, subject)"]


def test_where_a_value_no_upstream_job_has(write: WriteRecipe) -> None:
    assert invalid(write, DRAFT + REFINE + "    where: {subject: [mug, vase]}\n") == [
        "r.yaml:14:28: where: no job of 'draft' has subject=vase (values: lamp, mug)"]


@pytest.mark.parametrize(("where", "message"), [
    ("[subject]", "r.yaml:14:12: where must be a mapping of an upstream axis to the value (or list of values) to "
                  "take, e.g. 'where: {subject: [mug, lamp]}'"),
    ("{subject: []}", "r.yaml:14:22: where.subject: an empty list takes nothing; name the values to take"),
    ("{subject: [{a: 1}]}", "r.yaml:14:23: where.subject: name a value by its label (a string or number), got a "
                            "mapping"),
])
def test_where_is_a_mapping_of_values(write: WriteRecipe, where: str, message: str) -> None:
    assert invalid(write, DRAFT + REFINE + f"    where: {where}\n") == [message]


def test_where_reads_an_axis_anywhere_up_the_chain(write: WriteRecipe) -> None:
    text = DRAFT + REFINE + ANIMATE + "    where: {subject: lamp}\n"
    p = plan_file(write(text))
    assert [len(sp.plan.jobs) for sp in p.stages] == [2, 2, 1]
    assert p.stages[2].plan.jobs[0].id == "lamp"


# --- names that clash with the stage a stage needs -------------------------------------------------


@pytest.mark.parametrize(("text", "at", "what"), [
    (DRAFT + REFINE + "    vars: {draft: 1}\n", "14:12", "var"),
    (DRAFT.replace("stages:\n", "vars:\n  draft: x\nstages:\n") + REFINE, "4:3", "var"),
    (DRAFT + REFINE + "    matrix:\n      draft: [a, b]\n", "15:7", "axis"),
    (DRAFT + REFINE + "    matrix:\n      include: [{draft: a}]\n", "15:18", "include key"),
])
def test_a_var_or_axis_named_like_the_needed_stage(write: WriteRecipe, text: str, at: str, what: str) -> None:
    assert invalid(write, text) == [f"r.yaml:{at}: {what} 'draft' has the name of the stage this one needs (whose "
                                    f"outputs are read as draft.<output>): rename the {what}"]


# --- what a stage reads from upstream --------------------------------------------------------------


def test_an_unknown_output_suggests_the_nearest(write: WriteRecipe) -> None:
    text = DRAFT + REFINE.replace("draft.image }}", "draft.imagez }}")
    assert invalid(write, text) == [
        "r.yaml:13:14: input.image: draft (klingai/image-o1) has no output or axis 'imagez'; did you mean "
        "draft.image? (outputs: image, images; axes: subject)"]


def test_the_bare_stage_name(write: WriteRecipe) -> None:
    text = DRAFT + REFINE.replace("{{ draft.input.prompt }}", "{{ draft }}")
    assert invalid(write, text) == [
        "r.yaml:12:15: input.prompt: 'draft' is a stage: read one of its outputs (draft.image, draft.images), its "
        "input (draft.input.<field>) or an axis"]


def test_a_file_output_inside_text(write: WriteRecipe) -> None:
    text = DRAFT + REFINE.replace("{{ draft.input.prompt }}, refined", "see {{ draft.image }}")
    assert invalid(write, text) == [
        "r.yaml:12:15: input.prompt: draft.image is a file: it can only be the whole value of a file field of "
        "klingai/image-o1 (image), as '{{ draft.image }}'"]


def test_an_image_output_into_a_video_input(write: WriteRecipe) -> None:
    text = DRAFT + """\
  animate:
    app: klingai/video-o1@ef28809a
    needs: draft
    input:
      prompt: x
      reference_video: "{{ draft.image }}"
"""
    assert invalid(write, text) == [
        "r.yaml:14:24: input.reference_video takes a video; draft.image is an image: read it into image, end_image, "
        "reference_images"]


def test_a_video_output_into_an_image_input(write: WriteRecipe) -> None:
    text = DRAFT + """\
  animate:
    app: klingai/video-o1@ef28809a
    needs: draft
    input: {prompt: x, image: "{{ draft.image }}", duration: 5, mode: std}
  still:
    needs: animate
    input: {prompt: x, image: "{{ animate.video }}"}
"""
    assert invalid(write, text) == [
        "r.yaml:15:31: input.image takes an image; animate.video is a video: klingai/image-o1 takes none (its file "
        "fields: image)"]


def test_a_grand_upstream_file_through_input(write: WriteRecipe) -> None:
    text = DRAFT + REFINE + ANIMATE.replace("{{ refine.image }}", "{{ refine.input.image }}")
    assert invalid(write, text) == [
        "r.yaml:19:14: input.image: reads an output of 'draft' through 'refine' (refine.input); a stage reads only "
        "the outputs of the stage it needs: read an output of 'refine' itself (refine.image, refine.images), or add a "
        "stage that needs 'draft'"]


def test_a_grand_upstream_file_read_by_some_jobs_only_is_found(write: WriteRecipe) -> None:
    # the first job (mug) sends a URL; the lamp's would send draft's file, which animate does not need
    template = "{{ refine.input.image if refine.subject == 'lamp' else 'https://example.com/mug.png' }}"
    text = DRAFT + REFINE + ANIMATE.replace("{{ refine.image }}", template)
    assert invalid(write, text) == [
        "r.yaml:19:14: input.image: reads an output of 'draft' through 'refine' (refine.input); a stage reads only "
        "the outputs of the stage it needs: read an output of 'refine' itself (refine.image, refine.images), or add a "
        "stage that needs 'draft'"]


def test_reading_the_upstream_request_text_is_fine(write: WriteRecipe) -> None:
    text = DRAFT + REFINE + ANIMATE.replace("The {{ refine.subject }} turns", "{{ refine.input.prompt }}, turning")
    p = plan_file(write(text))
    assert p.render(p.stages[2].plan.jobs[0]).request["prompt"] == "A mug, refined, turning"


def test_a_stage_whose_app_is_unknown(write: WriteRecipe) -> None:
    text = DRAFT + REFINE.replace("    needs: draft\n", "    app: klingai/nope-o9\n    needs: draft\n")
    assert invalid(write, text) == [
        "r.yaml:10:10: no schema for app 'klingai/nope-o9': run `kling-pipeline schema pull klingai/nope-o9` to "
        "fetch it (bundled apps: elevenlabs/sound-effects, elevenlabs/tts, google/gemini-2-5-flash-image, "
        "klingai/image-o1, klingai/video-o1)"]


def test_a_stage_below_one_that_cannot_be_planned_is_not_reported_twice(write: WriteRecipe) -> None:
    text = DRAFT + REFINE.replace("draft.image }}", "draft.imagez }}") + ANIMATE
    assert len(invalid(write, text)) == 1


# --- value outputs (gemini's description: text) ------------------------------------------------------

SKETCH = """\
version: 1
app: google/gemini-2-5-flash-image@57fbd965
stages:
  sketch:
    matrix:
      subject: [mug, lamp]
    input:
      prompt: "A {{ subject }}"
      num_images: 3
"""  # lines 1..9; a stage below starts on line 10


def test_a_value_output_into_a_file_field(write: WriteRecipe) -> None:
    text = SKETCH + "  still:\n    app: klingai/image-o1@0pbaxv40\n    needs: sketch\n" \
                    "    input: {prompt: x, image: '{{ sketch.description }}'}\n"
    assert invalid(write, text) == [
        "r.yaml:13:31: input.image takes an image; sketch.description is a value (text), not a file: read a file "
        "output of sketch there, or sketch.description into a text field"]


def test_a_value_output_through_a_filter(write: WriteRecipe) -> None:
    text = SKETCH + "  speak:\n    app: elevenlabs/tts@0b666f9a\n    needs: sketch\n" \
                    "    input: {text: '{{ sketch.description | upper }}'}\n"
    assert invalid(write, text) == [
        "r.yaml:13:19: input.text: sketch.description is known only once sketch has run: print it as it is, "
        "'{{ sketch.description }}' (a filter, a test or a comparison would see a placeholder, not its text)"]


def test_a_value_output_into_a_field_that_takes_no_text(write: WriteRecipe) -> None:
    text = SKETCH + "  clip:\n    app: klingai/video-o1@ef28809a\n    needs: sketch\n" \
                    "    input: {prompt: x, mode: '{{ sketch.description }}'}\n"
    assert invalid(write, text) == [
        "r.yaml:13:30: input.mode: sketch.description is read as text, which input.mode does not take: read it into "
        "a text field of klingai/video-o1 (prompt, reference_video_type)"]


@pytest.mark.parametrize(("key", "value", "at", "what"), [
    ("output", "{filename: '{{ sketch.job_id }}-{{ sketch.images }}'}", "13:24", "output.filename"),
    ("matrix", "{filter: \"sketch.description != ''\"}", "13:22", "matrix.filter"),
])
def test_outputs_are_not_known_when_file_names_and_filters_are_worked_out(write: WriteRecipe, key: str, value: str,
                                                                          at: str, what: str) -> None:
    field = "images" if what == "output.filename" else "description"
    text = SKETCH + "  still:\n    app: klingai/image-o1@0pbaxv40\n    needs: sketch\n" \
                    f"    {key}: {value}\n    input: {{prompt: x, image: '{{{{ sketch.images }}}}'}}\n"
    assert invalid(write, text) == [
        f"r.yaml:{at}: {what}: sketch.{field} is an output of sketch, known only once it has run; {what} can read "
        "sketch's axes, sketch.input.<field> and sketch.job_id"]


def test_a_value_output_read_as_text_into_tts_is_counted_at_its_longest(write: WriteRecipe) -> None:
    text = SKETCH + "  speak:\n    app: elevenlabs/tts@0b666f9a\n    needs: sketch\n" \
                    "    input: {text: 'Here is {{ sketch.description }}'}\n"
    write(text)
    code, out, err = cli("validate", "r.yaml")
    # 2 sketches of 3 images at up to $0.12062 each ($0.72372) + 2 speeches at $6.80 each
    assert (code, out) == (0, "r.yaml: ok — 4 jobs, $14.32372\n")
    assert err == ("r.yaml:13:19: warning: input.text reads sketch.description, whose length is known only once "
                   "sketch has run: each job is counted at the most input.text takes (40,000 characters); the run "
                   "settles what is billed\n")
    p = plan_file(Path("r.yaml"))
    speak = p.stages[1].plan
    # one job per sketch job; 40,000 characters (tts text's maxLength) x $0.00017 = $6.80
    assert [(j.id, j.units, j.cost) for j in speak.jobs] == [("mug", 40_000, 680_000_000),
                                                            ("lamp", 40_000, 680_000_000)]
    request = p.render(speak.jobs[0]).request
    ref = re.search(r"https://\S+", request["text"])
    assert ref is not None and request["text"] == f"Here is {ref[0]}"
    token = parse_token(ref[0])
    assert token is not None and (token.stage, token.key, token.field, token.index) == (
        "sketch", p.stages[0].plan.jobs[0].key, "description", 0)


def test_a_value_output_in_a_price_field_over_max_job_usd(write: WriteRecipe) -> None:
    text = SKETCH + "  speak:\n    app: elevenlabs/tts@0b666f9a\n    needs: sketch\n" \
                    "    input: {text: '{{ sketch.description }}'}\n"
    write(text)
    code, _, err = cli("plan", "r.yaml", "--max-job-usd", "1")
    assert code == 2
    assert err.splitlines()[0] == ("r.yaml:13:19: [sketch=mug] a task costs up to $6.80 (input.text counted at its "
                                   "longest, 40,000 characters), more than --max-job-usd $1.00")


# --- the job limit, --only -------------------------------------------------------------------------


def test_the_job_limit_counts_every_stage(write: WriteRecipe) -> None:
    # 2 drafts + 2 refinements + 2 videos = 6 jobs: each stage alone is within 5, the chain is not
    assert invalid(write, DRAFT + REFINE + ANIMATE, "--max-jobs", "5") == [
        "r.yaml:14:3: stage 'animate' makes up to 2 jobs (2 jobs of 'refine' x 1 combination): with the 4 jobs of "
        "the stages before it, 6 in all, more than the limit of 5; narrow it, or raise the limit with --max-jobs N"]
    assert valid(write, DRAFT + REFINE + ANIMATE, "--max-jobs", "6") == "r.yaml: ok — 6 jobs, $0.952\n"


def test_only_with_an_axis_no_stage_has(write: WriteRecipe) -> None:
    write(DRAFT + REFINE)
    assert cli("plan", "r.yaml", "--only", "color=red") == (
        2, "", "error: --only color=...: no stage has a matrix key 'color' (keys: draft, refine, subject)\n")


def test_only_with_a_value_no_job_has(write: WriteRecipe) -> None:
    write(DRAFT + REFINE)
    assert cli("plan", "r.yaml", "--only", "subject=vase") == (
        2, "", "error: --only subject=vase: no combination has subject=vase (values: mug, lamp)\n")


def test_only_narrows_the_stage_with_the_axis_and_everything_below_it(write: WriteRecipe) -> None:
    path = write(DRAFT + FINISHES + ANIMATE)
    assert [len(sp.plan.jobs) for sp in plan_file(path).stages] == [2, 4, 4]
    assert [len(sp.plan.jobs) for sp in plan_file(path, only={"subject": {"mug"}}).stages] == [1, 2, 2]
    # an axis of a downstream stage: the stages above it are planned whole
    assert [len(sp.plan.jobs) for sp in plan_file(path, only={"finish": {"glossy"}}).stages] == [2, 2, 2]
    # the implicit axis: refine's jobs made from the draft 'mug'
    assert [len(sp.plan.jobs) for sp in plan_file(path, only={"draft": {"mug"}}).stages] == [2, 2, 2]


def test_only_that_leaves_a_where_nothing_to_take_is_no_error(write: WriteRecipe) -> None:
    write(DRAFT + FINISHES + ANIMATE + "    where: {finish: glossy}\n")
    code, out, err = cli("plan", "r.yaml", "--only", "finish=matte")
    assert (code, err) == (0, "")
    assert "  stage animate — klingai/video-o1@ef28809a — needs refine (each of its jobs), where finish=glossy" in out
    assert "    0 jobs · 0 seconds billed · $0.00 at $0.112/second (price read 2026-11-26)" in out


# --- plans -----------------------------------------------------------------------------------------


def test_the_example_pipeline_per_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    p = plan_file("recipes/pipeline.yaml")
    # draft: 2 subjects; refine: 2 drafts x 2 finishes; animate: the 2 glossy refinements, 5 s each
    assert [(sp.name, sp.needs, len(sp.plan.jobs), sp.plan.total_units, sp.plan.total_cost) for sp in p.stages] == [
        ("draft", None, 2, 2, 2 * IMAGE),
        ("refine", "draft", 4, 4, 4 * IMAGE),
        ("animate", "refine", 2, 10, 10 * STD_SECOND),
    ]
    assert p.total_cost == 6 * IMAGE + 10 * STD_SECOND == 100_800_000
    assert [j.id for j in p.stages[2].plan.jobs] == ["ceramic_mug-glossy", "brass_desk_lamp-glossy"]
    assert [j.output_name.split("/")[0] for j in p.jobs] == ["draft"] * 2 + ["refine"] * 4 + ["animate"] * 2


def test_the_example_pipeline_plan_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, out, err = cli("plan", "recipes/pipeline.yaml", "--rows", "0")
    assert (code, err) == (0, "")
    assert out.splitlines()[:5] == [
        "recipes/pipeline.yaml: pipeline — a pipeline of 3 stages",
        "  8 jobs · $1.008 in all",
        "  budget $2.00: within budget ($0.992 to spare)",
        "  output: recipes/out/pipeline (a folder per stage)",
        "  stage draft — klingai/image-o1@0pbaxv40",
    ]
    assert ("  stage refine — klingai/image-o1@0pbaxv40 — needs draft (each of its jobs x 2 combinations)"
            in out.splitlines())
    assert ("  stage animate — klingai/video-o1@ef28809a — needs refine (each of its jobs), where finish=glossy"
            in out.splitlines())
    assert "    2 jobs · 10 seconds billed · $0.84 at $0.084/second (price read 2026-11-26)" in out.splitlines()


def test_plan_json_has_the_stages_and_each_jobs_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, out, _ = cli("plan", "recipes/pipeline.yaml", "--json")
    doc = json.loads(out)
    assert code == 0
    assert [(s["name"], s["app"], s["needs"], s["where"], s["totals"]["jobs"], s["totals"]["cost_usd"],
             s["totals"]["at_most"]) for s in doc["stages"]] == [
        ("draft", "klingai/image-o1@0pbaxv40", None, {}, 2, "0.056", False),
        ("refine", "klingai/image-o1@0pbaxv40", "draft", {}, 4, "0.112", False),
        ("animate", "klingai/video-o1@ef28809a", "refine", {"finish": ["glossy"]}, 2, "0.84", False),
    ]
    assert doc["stages"][2]["price"]["unit"] == "second"
    assert [j["stage"] for j in doc["jobs"]] == ["draft"] * 2 + ["refine"] * 4 + ["animate"] * 2
    assert doc["jobs"][2]["combination"] == {"draft": "ceramic_mug", "finish": "matte"}
    assert (doc["totals"]["jobs"], doc["totals"]["cost_usd"]) == (8, "1.008")


def test_only_narrows_the_example_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    p = plan_file("recipes/pipeline.yaml", only={"subject": {"ceramic mug"}})
    assert [len(sp.plan.jobs) for sp in p.stages] == [1, 2, 1]
    assert p.total_cost == 3 * IMAGE + 5 * STD_SECOND


def test_a_downstream_job_reads_its_upstream_file_as_a_token(write: WriteRecipe) -> None:
    p = plan_file(write(DRAFT + REFINE))
    draft, refine = p.stages[0].plan, p.stages[1].plan
    for up, down in zip(draft.jobs, refine.jobs, strict=True):
        request = p.render(down).request
        assert request["image"] == f"{TOKEN_PREFIX}draft/{up.key}/image/0"
        assert request["prompt"] == f"{p.render(up).request['prompt']}, refined"
        assert down.combination.labels == {"draft": up.id}


def test_upstream_axes_and_ids_are_read_directly_or_through_axes(write: WriteRecipe) -> None:
    text = DRAFT + REFINE.replace("{{ draft.input.prompt }}, refined",
                                  "{{ draft.subject }}/{{ draft.axes.subject }}/{{ draft.job_id }}")
    p = plan_file(write(text))
    assert [p.render(j).request["prompt"] for j in p.stages[1].plan.jobs] == ["mug/mug/mug", "lamp/lamp/lamp"]


def test_editing_a_downstream_stage_keeps_every_upstream_key(write: WriteRecipe) -> None:
    before = plan_file(write(DRAFT + REFINE + ANIMATE))
    after = plan_file(write(DRAFT + REFINE + ANIMATE.replace("turns", "spins")))
    keys = [[j.key for j in sp.plan.jobs] for p in (before, after) for sp in p.stages]
    assert keys[0:2] == keys[3:5]  # draft and refine: the same jobs, never paid again
    assert set(keys[2]).isdisjoint(keys[5])
    # an edited draft changes its own jobs and every job below it
    edited = plan_file(write(DRAFT.replace("A {{ subject }}", "The {{ subject }}") + REFINE + ANIMATE))
    assert all(set(a).isdisjoint(b) for a, b in zip(keys[0:3], ([j.key for j in sp.plan.jobs]
                                                                for sp in edited.stages), strict=True))


def test_a_list_output_fans_out_one_job_per_file_counted_at_the_billed_units(write: WriteRecipe) -> None:
    text = SKETCH + """\
  refine:
    app: klingai/image-o1@0pbaxv40
    needs: sketch
    input:
      prompt: "{{ sketch.input.prompt }}, refined"
      image: "{{ sketch.images }}"
"""
    p = plan_file(write(text))
    refine = p.stages[1]
    assert refine.fanout == "images"
    # each sketch bills 3 images (num_images): 3 refinements each, one per file
    assert [j.id for j in refine.plan.jobs] == ["mug.0", "mug.1", "mug.2", "lamp.0", "lamp.1", "lamp.2"]
    assert refine.plan.total_cost == 6 * IMAGE
    key = p.stages[0].plan.jobs[0].key
    assert [p.render(j).request["image"] for j in refine.plan.jobs[:3]] == [
        f"{TOKEN_PREFIX}sketch/{key}/images/{i}" for i in range(3)]
    # the range of gemini's price: 6 images at $0.0387 to $0.12062
    assert (p.stages[0].plan.lowest_cost, p.stages[0].plan.total_cost) == (6 * 3_870_000, 6 * 12_062_000)
    write(text)
    code, out, _ = cli("plan", "r.yaml", "--json")
    doc = json.loads(out)
    assert [s["totals"]["at_most"] for s in doc["stages"]] == [False, True]
    code, out, _ = cli("plan", "r.yaml")
    assert code == 0
    assert out.splitlines()[1].endswith("(at most: a list output fans out one job per file, counted as billed)")
    assert "needs sketch (each file of its images)" in out


def test_repeat_in_a_downstream_stage(write: WriteRecipe) -> None:
    p = plan_file(write(DRAFT + REFINE + "    repeat: 3\n"))
    assert [j.id for j in p.stages[1].plan.jobs] == ["mug-r0", "mug-r1", "mug-r2", "lamp-r0", "lamp-r1", "lamp-r2"]
    assert len({j.key for j in p.stages[1].plan.jobs}) == 6
    assert p.stages[1].plan.total_cost == 6 * IMAGE


def test_own_matrix_times_upstream_jobs_with_include_exclude_and_where(write: WriteRecipe) -> None:
    text = DRAFT + REFINE.replace(", refined", ", {{ finish }}") + """\
    matrix:
      finish: [matte, glossy, satin]
      ratio: ["1:1", "16:9"]
      exclude: [{finish: satin, ratio: "16:9"}]
      include: [{finish: glossy, accent: gold}]
    where: {subject: mug}
    output: {filename: "{{ draft.job_id }}-{{ finish }}-{{ ratio }}"}
"""
    text = text.replace('image: "{{ draft.image }}"',
                        'image: "{{ draft.image }}"\n      aspect_ratio: "{{ ratio }}"')
    p = plan_file(write(text))
    refine = p.stages[1].plan
    # 1 draft (where) x (3 x 2 - 1 excluded) = 5
    assert [j.output_name for j in refine.jobs] == [
        "refine/mug-matte-1:1", "refine/mug-matte-16:9", "refine/mug-glossy-1:1", "refine/mug-glossy-16:9",
        "refine/mug-satin-1:1"]
    assert [j.combination.labels.get("accent") for j in refine.jobs] == [None, None, "gold", "gold", None]


def test_two_root_stages_and_a_stage_on_each(write: WriteRecipe) -> None:
    text = DRAFT + REFINE + """\
  backdrop:
    matrix:
      colour: [teal, amber, grey]
    input: {prompt: "A {{ colour }} backdrop"}
  backdrop_clip:
    app: klingai/video-o1@ef28809a
    needs: backdrop
    input: {prompt: "x", image: "{{ backdrop.image }}", duration: 10, mode: std}
"""
    p = plan_file(write(text))
    assert [(sp.name, sp.needs, len(sp.plan.jobs)) for sp in p.stages] == [
        ("draft", None, 2), ("refine", "draft", 2), ("backdrop", None, 3), ("backdrop_clip", "backdrop", 3)]
    assert p.total_cost == 7 * IMAGE + 30 * STD_SECOND


def test_stages_are_ordered_upstream_first_whatever_the_file_order(write: WriteRecipe) -> None:
    text = "version: 1\napp: klingai/image-o1@0pbaxv40\nstages:\n" + REFINE + DRAFT.split("stages:\n")[1]
    p = plan_file(write(text))
    assert [sp.name for sp in p.stages] == ["draft", "refine"]


def test_extends_a_pipeline_stage_by_stage(write: WriteRecipe) -> None:
    write(DRAFT + REFINE + "budget: {max_usd: 1}\n", "base.yaml")
    text = """\
extends: base.yaml
vars: {light: soft light}
stages:
  refine:
    matrix: {finish: [matte, glossy]}
    input:
      prompt: "{{ draft.input.prompt }}, {{ finish }}, {{ light }}"
"""
    p = plan_file(write(text))
    refine = p.stages[1].plan
    assert len(refine.jobs) == 4
    request = p.render(refine.jobs[1]).request
    assert request["prompt"] == "A mug, glossy, soft light"
    assert request["image"].startswith(f"{TOKEN_PREFIX}draft/")  # the base's image, kept by the deep merge


def test_the_shared_vars_reach_every_stage_and_a_stage_may_override_them(write: WriteRecipe) -> None:
    text = DRAFT.replace("stages:\n", "vars: {light: soft}\nstages:\n").replace(
        '"A {{ subject }}"', '"A {{ subject }}, {{ light }}"') + REFINE.replace(
        ", refined", ", {{ light }}") + "    vars: {light: hard}\n"
    p = plan_file(write(text))
    assert p.render(p.stages[1].plan.jobs[0]).request["prompt"] == "A mug, soft, hard"


def test_a_stage_that_needs_one_that_cannot_be_read(write: WriteRecipe) -> None:
    # refine is no mapping (an error), animate needs it: one error, at refine, and no crash
    text = DRAFT + "  refine: 3\n" + ANIMATE + "  still:\n    needs: animate\n    input: {prompt: x}\n"
    assert invalid(write, text) == [
        "r.yaml:9:11: stage 'refine' must be a mapping (app, matrix, input, needs...), got an integer"]
    text = DRAFT + REFINE.replace("  refine:", "  1refine:") + ANIMATE.replace("needs: refine", "needs: 1refine")
    assert invalid(write, text) == [
        "r.yaml:9:3: stage name '1refine' must be a name a template can use: letters, digits and '_', not starting "
        "with a digit"]


def test_file_names_may_read_the_upstream_request_and_axes(write: WriteRecipe) -> None:
    text = DRAFT + REFINE + ("    output: {filename: '{{ draft.input.prompt }}-{{ draft.subject }}-"
                             "{{ draft.job_id }}'}\n")
    p = plan_file(write(text))
    assert [j.output_name for j in p.stages[1].plan.jobs] == ["refine/A mug-mug-mug", "refine/A lamp-lamp-lamp"]


def test_a_where_no_upstream_job_meets_in_full(write: WriteRecipe) -> None:
    text = DRAFT.replace("      subject: [mug, lamp]\n", "      include: [{subject: mug, tone: warm}, "
                                                           "{subject: lamp, tone: cool}]\n")
    text += REFINE + "    where: {subject: mug, tone: cool}\n"
    assert invalid(write, text) == [
        "r.yaml:10:12: stage 'refine' takes no job of 'draft': none has subject=mug and tone=cool; widen its where"]


def test_a_stage_over_an_empty_stage_is_empty(write: WriteRecipe) -> None:
    text = DRAFT.replace("      subject: [mug, lamp]\n", "      subject: [mug, lamp]\n      exclude: [{subject: mug}, "
                                                           "{subject: lamp}]\n") + REFINE + ANIMATE
    assert valid(write, text) == "r.yaml: ok — 0 jobs, $0.00\n"
