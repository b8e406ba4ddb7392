"""Every expanded request is checked against the app's bundled input schema, before spending."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from kling_pipeline.core.schemas import load_app
from kling_pipeline.core.validate import RequestValidator

from .conftest import WriteRecipe
from .util import HEAD, errors, ok, warnings

APP = load_app("klingai/image-o1")
PROPS: dict[str, Any] = dict(APP.input_schema["properties"])
RATIOS: list[str] = PROPS["aspect_ratio"]["enum"]
RESOLUTIONS: list[str] = PROPS["resolution"]["enum"]
N_MAX: int = PROPS["n"]["maximum"]
PROMPT_MAX: int = PROPS["prompt"]["maxLength"]
FIELDS = ", ".join(PROPS)


def test_the_bundled_schema_is_what_the_contract_says() -> None:
    """The facts the other tests rely on (CONTRACT.md, 'The app klingai/image-o1')."""
    assert list(PROPS) == ["prompt", "image", "negative_prompt", "aspect_ratio", "resolution", "n"]
    assert APP.input_schema["required"] == ["prompt"]
    assert APP.input_schema["additionalProperties"] is False
    assert (PROPS["n"]["minimum"], N_MAX, PROMPT_MAX) == (1, 9, 2500)
    assert "5:4" not in RATIOS and "auto" not in RATIOS
    assert (APP.pricing.microcents_per_unit, APP.pricing.quantity_field) == (2_800_000, "n")


def test_enum_error_points_at_the_axis_entry_and_names_the_combination(write: WriteRecipe) -> None:
    path = write(HEAD + """\
matrix:
  ratio: ["1:1", "5:4", "16:9"]
  subject: [mug, lamp, vase]
input:
  prompt: "{{ subject }}"
  aspect_ratio: "{{ ratio }}"
""")
    assert errors(path) == [
        f"r.yaml:4:18: [ratio=5:4, subject=mug] input.aspect_ratio: '5:4' is not one of: {', '.join(RATIOS)} "
        "(and 2 more combinations)"
    ]


def test_enum_error_in_a_block_list_points_at_the_list_item(write: WriteRecipe) -> None:
    path = write(HEAD + """\
matrix:
  ratio:
    - "1:1"
    - "4:5"
input:
  prompt: x
  aspect_ratio: "{{ ratio }}"
""")
    assert errors(path) == [f"r.yaml:6:7: [ratio=4:5] input.aspect_ratio: '4:5' is not one of: {', '.join(RATIOS)}"]


def test_value_from_a_var_points_at_the_var(write: WriteRecipe) -> None:
    path = write(HEAD + 'vars:\n  res: 4k\ninput:\n  prompt: x\n  resolution: "{{ res }}"\n')
    assert errors(path) == [f"r.yaml:4:8: [] input.resolution: '4k' is not one of: {', '.join(RESOLUTIONS)}"]


def test_value_from_an_expression_points_at_the_template(write: WriteRecipe) -> None:
    path = write(HEAD + 'vars:\n  res: 4\ninput:\n  prompt: x\n  resolution: "{{ res }}k"\n')
    assert errors(path) == [f"r.yaml:7:15: [] input.resolution: '4k' is not one of: {', '.join(RESOLUTIONS)}"]


def test_value_from_a_mapping_axis_attribute_points_at_the_axis_entry(write: WriteRecipe) -> None:
    path = write(HEAD + """\
matrix:
  look:
    - {name: wide, ratio: "16:9"}
    - {name: odd, ratio: "5:4"}
input:
  prompt: x
  aspect_ratio: "{{ look.ratio }}"
""")
    assert errors(path) == [f"r.yaml:6:7: [look=odd] input.aspect_ratio: '5:4' is not one of: {', '.join(RATIOS)}"]


def test_range_error(write: WriteRecipe) -> None:
    path = write(HEAD + "input:\n  prompt: x\n  n: 12\n")
    assert errors(path) == [f"r.yaml:5:6: [] input.n: 12 is out of range: must be at most {N_MAX}"]


def test_range_error_below(write: WriteRecipe) -> None:
    path = write(HEAD + "matrix:\n  k: [0, 1]\ninput:\n  prompt: x\n  n: '{{ k }}'\n")
    assert errors(path) == ["r.yaml:4:7: [k=0] input.n: 0 is out of range: must be at least 1"]


def test_prompt_too_long_does_not_dump_the_prompt(write: WriteRecipe) -> None:
    path = write(HEAD + """\
vars:
  filler: "lorem ipsum "
input:
  prompt: "{{ filler * 250 }}"
""")
    found = errors(path)
    assert found == [f"r.yaml:6:11: [] input.prompt: is 3000 characters long; at most {PROMPT_MAX} are allowed"]
    assert "lorem" not in found[0]


def test_prompt_of_exactly_the_limit_is_fine(write: WriteRecipe) -> None:
    p = ok(write(HEAD + f"input:\n  prompt: \"{{{{ 'x' * {PROMPT_MAX} }}}}\"\n"))
    assert len(p.render(p.jobs[0]).request["prompt"]) == PROMPT_MAX


def test_empty_prompt(write: WriteRecipe) -> None:
    path = write(HEAD + "matrix:\n  s: ['', a]\ninput:\n  prompt: '{{ s }}'\n")
    assert errors(path) == ["r.yaml:4:7: [s=] input.prompt: must not be empty"]


@pytest.mark.parametrize(("field", "hint"), [
    ("num_images", "n"), ("ratio", "aspect_ratio"), ("aspect_ration", "aspect_ratio"), ("image_url", "image"),
    ("negative", "negative_prompt"), ("promt", "prompt"),
])
def test_unknown_field_suggests_the_real_one(write: WriteRecipe, field: str, hint: str) -> None:
    path = write(HEAD + f"input:\n  prompt: x\n  {field}: 1\n")
    assert errors(path) == [f"r.yaml:5:3: input.{field}: unknown field for this app; did you mean {hint!r}? "
                            f"(fields: {FIELDS})"]


def test_unknown_field_without_a_close_match(write: WriteRecipe) -> None:
    path = write(HEAD + "input:\n  prompt: x\n  seed: 42\n")
    assert errors(path) == [f"r.yaml:5:3: input.seed: unknown field for this app (fields: {FIELDS})"]


def test_missing_prompt(write: WriteRecipe) -> None:
    path = write(HEAD + "input:\n  n: 1\n")
    assert errors(path) == ["r.yaml:3:1: input: missing required field 'prompt'"]


@pytest.mark.parametrize(("yaml_value", "field", "message"), [
    ("n: '2'", "n", "must be an integer, got a string '2'"),
    ("n: 2.5", "n", "must be an integer, got a number 2.5"),
    ("n: true", "n", "must be an integer, got a boolean true"),
    ("resolution: 1", "resolution", "must be a string, got an integer 1"),
    ("image: 5", "image", "must be a string or null, got an integer 5"),
    ("negative_prompt: [a]", "negative_prompt", "must be a string or null, got a list ['a']"),
    ("aspect_ratio: null", "aspect_ratio", "must be a string, got null"),
])
def test_wrong_types(write: WriteRecipe, yaml_value: str, field: str, message: str) -> None:
    path = write(HEAD + f"input:\n  prompt: x\n  {yaml_value}\n")
    col = 3 + len(field) + 2
    found = [e for e in errors(path) if "negative_prompt is accepted" not in e]
    assert found == [f"r.yaml:5:{col}: [] input.{field}: {message}"]


def test_a_template_giving_a_non_string_prompt(write: WriteRecipe) -> None:
    path = write(HEAD + "matrix:\n  v: [1, true, '1']\ninput:\n  prompt: '{{ v }}'\n")
    assert errors(path) == [
        "r.yaml:4:7: [v=1] input.prompt: must be a string, got an integer 1",
        "r.yaml:4:10: [v=true] input.prompt: must be a string, got a boolean true",
    ]


def test_many_problems_in_one_request_are_all_reported(write: WriteRecipe) -> None:
    path = write(HEAD + "input:\n  prompt: ''\n  n: 10\n  aspect_ratio: wide\n")
    assert errors(path) == [
        "r.yaml:4:11: [] input.prompt: must not be empty",
        "r.yaml:5:6: [] input.n: 10 is out of range: must be at most 9",
        f"r.yaml:6:17: [] input.aspect_ratio: 'wide' is not one of: {', '.join(RATIOS)}",
    ]


def test_integral_float_n_is_an_integer_and_priced_as_such(write: WriteRecipe) -> None:
    p = ok(write(HEAD + "input:\n  prompt: x\n  n: 2.0\n"))
    assert (p.jobs[0].units, p.total_cost) == (2, 5_600_000)


def test_negative_prompt_warns_that_it_has_no_effect(write: WriteRecipe) -> None:
    p = ok(write(HEAD + "input:\n  prompt: x\n  negative_prompt: blurry\n"))
    assert warnings(p) == ["r.yaml:5:3: input.negative_prompt is accepted by klingai/image-o1 but not forwarded to "
                           "the model by the current app version: it has no effect"]


def test_n_above_one_warns_it_is_billed_but_returns_one_image(write: WriteRecipe) -> None:
    p = ok(write(HEAD + "matrix:\n  k: [1, 3, 4]\ninput:\n  prompt: x\n  n: '{{ k }}'\n"))
    assert warnings(p) == [
        "r.yaml:4:10: [k=3] input.n = 3: billed as 3 images ($0.084 a task) but the app returns 1; "
        "use 'repeat: 3' with n: 1 to get 3 images",
        "r.yaml:4:13: [k=4] input.n = 4: billed as 4 images ($0.112 a task) but the app returns 1; "
        "use 'repeat: 4' with n: 1 to get 4 images",
    ]
    assert [(j.units, j.cost) for j in p.jobs] == [(1, 2_800_000), (3, 8_400_000), (4, 11_200_000)]
    assert p.images_returned == 3


def test_unpinned_app_warns(write: WriteRecipe) -> None:
    p = ok(write("version: 1\napp: klingai/image-o1\ninput: {prompt: x}\n"))
    assert warnings(p) == ["r.yaml:2:6: app is not pinned: write 'klingai/image-o1@0pbaxv40' for a reproducible sweep"]


def test_valid_requests_have_no_warnings(write: WriteRecipe) -> None:
    p = ok(write(HEAD + f"matrix:\n  r: {RATIOS}\n  q: {RESOLUTIONS}\ninput:\n  prompt: x\n"
                        "  aspect_ratio: '{{ r }}'\n  resolution: '{{ q }}'\n  n: 1\n  image: null\n"))
    assert len(p.jobs) == len(RATIOS) * len(RESOLUTIONS)
    assert warnings(p) == []


# --- the validator's shortcuts (fast accept, memo) agree with jsonschema on every field ---

VALUES: list[Any] = [
    None, True, False, 0, 1, 2, 9, 10, -1, 1.0, 2.0, 2.5, "", "x", "1", "1:1", "5:4", "2k", "4k", "x" * 2500,
    "x" * 2501, [], ["a"], {}, {"a": 1}, *RATIOS, *RESOLUTIONS,
]


@pytest.mark.parametrize("field", list(PROPS))
def test_field_checks_agree_with_jsonschema(field: str) -> None:
    validator = RequestValidator(APP.input_schema)
    reference = Draft202012Validator(PROPS[field])
    for _ in range(2):  # the second round answers from the memo
        for value in VALUES:
            assert (validator.check_field(field, value) == ()) == reference.is_valid(value), (field, value)


@pytest.mark.parametrize("value", [0, 7, -1, 1.5, 2.0, True, False, None, "x", "1:1", [1], {"a": 1}, 10**30])
def test_a_mistyped_value_gets_the_message_jsonschema_would_give(value: Any) -> None:
    """Simple fields say a type error without jsonschema (500,000 of them took seconds)."""
    from jsonschema import Draft202012Validator

    from kling_pipeline.core.schemas import load_app
    from kling_pipeline.core.validate import RequestValidator, describe

    schema = load_app("klingai/image-o1").input_schema
    validator = RequestValidator(schema)
    for name, sub in schema["properties"].items():
        errors = [e for e in Draft202012Validator(sub).iter_errors(value) if e.validator == "type"]
        if errors and isinstance(sub.get("type"), str):
            assert validator.check_field(name, value) == (f"input.{name}: {describe(errors[0])}",)


def test_a_field_whose_schema_refers_to_the_schemas_defs_is_checked(write: WriteRecipe) -> None:
    """gemini's aspect_ratio is a '$ref' to '#/$defs/...': its field check resolves it (was an internal error)."""
    path = write("version: 1\napp: google/gemini-2-5-flash-image\nmatrix:\n  r: ['1:1', '7:3']\n"
                 "input:\n  prompt: x\n  aspect_ratio: '{{ r }}'\n")
    assert errors(path) == ["r.yaml:4:14: [r=7:3] input.aspect_ratio: '7:3' is not one of: auto, 21:9, 16:9, 3:2, "
                            "4:3, 5:4, 1:1, 4:5, 3:4, 2:3, 9:16"]
