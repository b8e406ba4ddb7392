"""Plain-Python checks for the simple parts of an app's JSON Schema (draft 2020-12).

Checking 100,000 requests with jsonschema takes seconds, and importing it takes a
while too. Most fields of an app's input schema are simple — a type, a length, a
range, an enum, or a choice (``anyOf``) of such — so:

* ``fast_accept`` compiles a simple field schema to a function that says "valid" only
  for values jsonschema accepts; whatever it does not accept goes to jsonschema, which
  gives the messages;
* ``plainly_valid`` says a schema is valid without jsonschema's meta-schema check when
  it is written only with keywords it knows, each with a value the meta-schema allows;
  anything else goes to that check.

Both only ever answer "yes" where jsonschema does (``tests/core/test_fastschema.py``
checks them against it); "no" means "ask jsonschema".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["PY_TYPES", "fast_accept", "plainly_valid"]

_SIMPLE_KEYS = {"type", "minLength", "maxLength", "enum", "minimum", "maximum", "title", "description",
                "default", "examples", "format", "$comment"}
_ANNOTATIONS = {"title", "description", "default", "examples", "format", "$comment"}
PY_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def fast_accept(schema: Mapping[str, Any]) -> Callable[[Any], bool] | None:
    """A plain-Python check for a simple sub-schema, or None when it is not simple.

    It only ever says "valid" for values jsonschema would accept; anything it
    rejects goes to jsonschema for the exact messages. ``format`` is an
    annotation in 2020-12 (not asserted), as jsonschema treats it by default.
    A choice (``anyOf``) of simple schemas is simple.
    """
    keys = {k for k in schema if not k.startswith("x-")}
    if "anyOf" in keys:
        return _any_of(schema) if keys - {"anyOf"} <= _ANNOTATIONS else None
    if not keys <= _SIMPLE_KEYS or not isinstance(schema.get("type"), str) or schema["type"] not in PY_TYPES:
        return None
    is_type = PY_TYPES[schema["type"]]
    lo_len, hi_len = schema.get("minLength"), schema.get("maxLength")
    lo, hi = schema.get("minimum"), schema.get("maximum")
    enum = schema.get("enum")
    try:  # membership by (type, value): 1, 1.0 and True stay apart, as the loop below keeps them
        members = None if enum is None else frozenset((type(e), e) for e in enum)
    except TypeError:  # an unhashable enum member (a list, a mapping): compare one by one
        members = None

    if schema["type"] == "string" and (enum is None or members is not None):
        min_len, max_len = lo_len or 0, hi_len

        def accept_str(v: Any) -> bool:  # the common case (prompts, enums of strings), kept short
            if not isinstance(v, str) or len(v) < min_len or (max_len is not None and len(v) > max_len):
                return False
            return members is None or (type(v), v) in members

        return accept_str

    def accept(v: Any) -> bool:
        if not is_type(v):
            return False
        if isinstance(v, str) and (
            (lo_len is not None and len(v) < lo_len) or (hi_len is not None and len(v) > hi_len)
        ):
            return False
        if isinstance(v, int | float) and ((lo is not None and v < lo) or (hi is not None and v > hi)):
            return False
        if members is not None:
            return (type(v), v) in members
        return enum is None or any(type(v) is type(e) and v == e for e in enum)

    return accept


def _any_of(schema: Mapping[str, Any]) -> Callable[[Any], bool] | None:
    branches = schema["anyOf"]
    if not isinstance(branches, list) or not branches or not all(isinstance(b, Mapping) for b in branches):
        return None
    checks = [fast_accept(b) for b in branches]
    accepts = [c for c in checks if c is not None]
    if len(accepts) != len(checks):
        return None
    return lambda v: any(accept(v) for accept in accepts)  # a branch that accepts makes the choice valid


# --- the meta-schema, for schemas written with these keywords only ---

_SIMPLE_TYPES = frozenset({"array", "boolean", "integer", "null", "number", "object", "string"})
_DRAFT = "https://json-schema.org/draft/2020-12/schema"
_PLAIN_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?:/[A-Za-z0-9._~-]+)*/?")  # a URI, and a URI-reference
_NON_NEGATIVE = ("minLength", "maxLength")
_NUMBERS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_TEXTS = ("title", "description", "$comment", "format")
_FLAGS = ("deprecated", "readOnly", "writeOnly")
_ANYTHING = ("default", "const")
_LISTS = ("enum", "examples")
_CHOICES = ("anyOf", "oneOf")


def _is_int(v: Any) -> bool:
    return type(v) is int


def _is_number(v: Any) -> bool:
    return type(v) in (int, float)


def plainly_valid(schema: Any, root: bool = True) -> bool:
    """True when ``schema`` is a valid 2020-12 schema written with a small set of keywords
    (types, lengths, ranges, enums, choices, properties, annotations, ``x-`` extensions),
    each holding a value the meta-schema allows. False means: check it with jsonschema."""
    if not isinstance(schema, dict):
        return False
    for key, value in schema.items():
        if not isinstance(key, str):
            return False
        if key.startswith("x-") or key in _ANYTHING:
            continue
        if key in _TEXTS:
            ok = isinstance(value, str)
        elif key in _FLAGS:
            ok = isinstance(value, bool)
        elif key in _NON_NEGATIVE:
            ok = _is_int(value) and value >= 0
        elif key in _NUMBERS:
            ok = _is_number(value)
        elif key in _LISTS:
            ok = isinstance(value, list)
        elif key == "type":
            ok = (isinstance(value, str) and value in _SIMPLE_TYPES) or (
                isinstance(value, list) and bool(value) and all(isinstance(t, str) and t in _SIMPLE_TYPES
                                                                for t in value) and len(set(value)) == len(value))
        elif key in _CHOICES:
            ok = isinstance(value, list) and bool(value) and all(plainly_valid(b, root=False) for b in value)
        elif key == "properties":
            ok = isinstance(value, dict) and all(isinstance(k, str) and plainly_valid(v, root=False)
                                                 for k, v in value.items())
        elif key == "required":
            ok = isinstance(value, list) and all(isinstance(n, str) for n in value) and len(set(value)) == len(value)
        elif key == "additionalProperties":
            ok = isinstance(value, bool) or plainly_valid(value, root=False)
        elif key == "$schema":
            ok = root and value == _DRAFT
        elif key == "$id":
            ok = root and isinstance(value, str) and _PLAIN_URL.fullmatch(value) is not None
        else:
            ok = False
        if not ok:
            return False
    return True
