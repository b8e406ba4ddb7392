"""The plain-Python schema checks say "yes" only where jsonschema does.

``plainly_valid`` lets a plan skip jsonschema's meta-schema check (and its import);
``fast_accept`` lets it skip jsonschema for values it accepts. Both are checked against
jsonschema on generated schemas and values, valid and not.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from kling_pipeline.core.fastschema import fast_accept, plainly_valid
from kling_pipeline.core.schemas import load_app

ANY = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([0.5, 2.0, -1.0]),
                st.sampled_from(["", "x", "16:9", "string", "integer", "null", "strin"]))
JSONISH = st.recursive(ANY, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                    st.dictionaries(st.sampled_from(["a", "type"]), inner, max_size=2)),
                       max_leaves=6)
TYPES = st.sampled_from(["string", "integer", "number", "boolean", "null", "object", "array", "strin", 3])
KEYWORD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "type": st.one_of(TYPES, st.lists(TYPES, max_size=3)),
    "minLength": st.one_of(st.integers(-1, 3), st.just(1.0), st.just(True)),
    "maxLength": st.one_of(st.integers(-1, 3), st.just("2")),
    "minimum": st.one_of(st.integers(-2, 2), st.just(0.5), st.just(True), st.just("1")),
    "maximum": st.one_of(st.integers(-2, 2), st.just(2.5), st.none()),
    "exclusiveMinimum": st.one_of(st.integers(-2, 2), st.just("0")),
    "enum": st.one_of(st.lists(ANY, max_size=3), ANY),
    "const": JSONISH,
    "default": JSONISH,
    "examples": st.one_of(st.lists(ANY, max_size=2), ANY),
    "title": ANY,
    "description": ANY,
    "$comment": ANY,
    "format": st.one_of(st.just("file"), ANY),
    "deprecated": ANY,
    "x-file": JSONISH,
    "pattern": st.just("[a-"),
    "items": st.just({"type": "string"}),
}


def schemas(depth: int = 2) -> st.SearchStrategy[Any]:
    leaf = st.dictionaries(st.sampled_from(sorted(KEYWORD_VALUES)), st.just(None), max_size=4).flatmap(
        lambda d: st.fixed_dictionaries({k: KEYWORD_VALUES[k] for k in d}))
    if depth == 0:
        return st.one_of(leaf, st.booleans())
    inner = schemas(depth - 1)
    extra = st.fixed_dictionaries({}, optional={
        "anyOf": st.one_of(st.lists(inner, max_size=3), inner),
        "properties": st.one_of(st.dictionaries(st.sampled_from(["prompt", "n"]), inner, max_size=2), ANY),
        "required": st.one_of(st.lists(st.sampled_from(["prompt", "n", 1]), max_size=3), ANY),
        "additionalProperties": st.one_of(st.booleans(), inner, ANY),
        "$schema": st.sampled_from(["https://json-schema.org/draft/2020-12/schema", "not a uri", 1]),
        "$id": st.sampled_from(["https://kling-pipeline.local/a.json", "https://x/y#frag", "#", 1]),
    })
    return st.tuples(leaf, extra).map(lambda pair: {**pair[0], **pair[1]})


@settings(max_examples=1500, deadline=None)
@given(schema=schemas())
def test_a_plainly_valid_schema_is_valid_for_jsonschema(schema: Any) -> None:
    if plainly_valid(schema):
        Draft202012Validator.check_schema(schema)  # raises SchemaError if not


@pytest.mark.parametrize("schema", [
    {"type": "strin"}, {"minLength": -1}, {"maxLength": 1.5}, {"required": ["a", "a"]}, {"type": []},
    {"type": ["string", "string"]}, {"anyOf": []}, {"enum": "x"}, {"properties": {"a": {"type": 3}}},
    {"title": 3}, {"$id": "https://x/y#frag"}, {"minimum": "1"}, {"examples": {}},
])
def test_invalid_schemas_are_not_plainly_valid(schema: dict[str, Any]) -> None:
    assert not plainly_valid(schema)
    with pytest.raises(SchemaError):
        Draft202012Validator.check_schema(schema)


def test_the_bundled_input_schema_is_plainly_valid() -> None:
    assert plainly_valid(load_app("klingai/image-o1").input_schema)


SIMPLE = st.fixed_dictionaries(
    {"type": st.sampled_from(["string", "integer", "number", "boolean", "null"])},
    optional={"minLength": st.integers(0, 3), "maxLength": st.integers(0, 3), "minimum": st.integers(-2, 2),
              "maximum": st.one_of(st.integers(-2, 2), st.just(2.5)), "format": st.just("file"),
              "enum": st.lists(st.one_of(ANY, st.lists(ANY, max_size=1)), min_size=1, max_size=3)})
FIELDS = st.one_of(SIMPLE, st.lists(SIMPLE, min_size=1, max_size=3).map(lambda b: {"anyOf": b, "default": None}))


@settings(max_examples=1500, deadline=None)
@given(schema=FIELDS, values=st.lists(JSONISH, min_size=1, max_size=5))
def test_a_fast_accepted_value_is_valid_for_jsonschema(schema: dict[str, Any], values: list[Any]) -> None:
    accept = fast_accept(schema)
    assert accept is not None
    reference = Draft202012Validator(schema)
    for value in values:
        if accept(value):
            assert reference.is_valid(value), (schema, value)


def test_fast_accept_takes_the_apps_choices() -> None:
    props = load_app("klingai/image-o1").input_schema["properties"]
    image, negative = fast_accept(props["image"]), fast_accept(props["negative_prompt"])
    assert image is not None and negative is not None
    assert image(None) and image("refs/mug.png") and not image(3)
    assert negative(None) and negative("blurry") and not negative(["blurry"])


def test_a_valid_plan_imports_neither_jsonschema_nor_an_http_client(tmp_path: Any) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("version: 1\napp: klingai/image-o1@0pbaxv40\nmatrix:\n  s: [mug, lamp]\n"
                      "input:\n  prompt: 'A {{ s }}'\n  n: 1\n  image: null\n  negative_prompt: blurry\n")
    code = (f"import sys; from kling_pipeline import plan_file; p = plan_file({str(recipe)!r}); "
            "print(len(p.jobs), sorted(m for m in ('jsonschema', 'httpx') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "2 []\n"
