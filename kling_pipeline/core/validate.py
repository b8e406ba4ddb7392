"""Checking rendered requests against the app's JSON input schema.

The schema is taken apart once: top-level ``required`` / ``additionalProperties``
are checked on the request template's keys (they are the same for every job),
and each field is checked against its own sub-schema, memoised for repeated
values. A schema with other top-level constraints (``allOf``, ``if``...) is also
checked whole, per request. Messages are written for people: they never dump a
2,600-character prompt.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from .errors import SchemaDataError
from .fastschema import PY_TYPES, fast_accept, plainly_valid
from .jsonref import follow_ref
from .localfiles import FileLimits

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator, ValidationError

__all__ = ["FieldProblem", "RequestValidator"]

_DECOMPOSABLE = {
    "$schema", "$id", "$defs", "title", "description", "type", "properties", "required",
    "additionalProperties", "default", "examples", "$comment",
}
_MEMO_LIMIT = 4096
_TYPE_NAMES = {
    "string": "a string", "integer": "an integer", "number": "a number", "boolean": "a boolean",
    "null": "null", "object": "a mapping", "array": "a list",
}


@dataclass(frozen=True, slots=True)
class FieldProblem:
    path: tuple[str | int, ...]  # inside the request
    message: str


def short(value: Any, limit: int = 60) -> str:
    """A value as it reads in a message, cut to ``limit`` characters."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return text[: limit - 5] + "...'" if isinstance(value, str) else text[:limit] + "..."


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _types(schema: Mapping[str, Any], root: Mapping[str, Any] | None = None) -> list[str]:
    if "type" in schema:
        t = schema["type"]
        return list(t) if isinstance(t, list) else [t]
    out: list[str] = []
    for branch in schema.get("anyOf", schema.get("oneOf", [])):
        out.extend(_types(follow_ref(branch, root or schema), root or schema))
    return out


def _choice_enum(schema: Mapping[str, Any], v: Any) -> str | None:
    """For a choice of an enum or null (``anyOf: [{$ref: enum}, {type: null}]``) and a value of the
    enum's type: what the enum allows (else None)."""
    branches = [follow_ref(b, schema) for b in schema.get("anyOf", schema.get("oneOf", []))]
    values = [x for b in branches for x in b.get("enum", ())]
    if not values or v is None or not any(type(x) is type(v) for x in values):
        return None
    nullable = any(b.get("type") == "null" for b in branches)
    return f"{short(v)} is not one of: {', '.join(str(x) for x in values)}{' (or null)' if nullable else ''}"


def _wrong_type(names: str, v: Any) -> str:
    if v is None or isinstance(v, bool):  # as JSON/YAML spell them: null, true, false
        return f"must be {names}, got {'null' if v is None else f'a boolean {str(v).lower()}'}"
    return f"must be {names}, got {json_type(v)} {short(v)}"


def describe(error: ValidationError) -> str:
    """One readable sentence for a jsonschema error."""
    v, kw, arg = cast(Any, error.instance), error.validator, cast(Any, error.validator_value)
    if kw == "enum":
        return f"{short(v)} is not one of: {', '.join(str(x) for x in arg)}"
    if kw == "const":
        return f"{short(v)} must be {arg!r}"
    if kw == "maxLength":
        return f"is {len(v)} characters long; at most {arg} are allowed"
    if kw == "minLength":
        return "must not be empty" if arg == 1 else f"is {len(v)} characters long; at least {arg} are required"
    if kw in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        word = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "more than",
                "exclusiveMaximum": "less than"}[str(kw)]
        return f"{short(v)} is out of range: must be {word} {arg}"
    if kw in ("anyOf", "oneOf") and isinstance(error.schema, Mapping):
        choice = _choice_enum(error.schema, v)
        if choice is not None:
            return choice
    if kw in ("type", "anyOf", "oneOf"):
        wanted = _types(error.schema) if isinstance(error.schema, Mapping) else []
        if wanted:
            return _wrong_type(" or ".join(_TYPE_NAMES.get(t, t) for t in dict.fromkeys(wanted)), v)
    if kw == "pattern":
        return f"{short(v)} does not match the pattern {arg!r}"
    if kw == "format":
        return f"{short(v)} is not a valid {arg}"
    message = error.message
    return message if len(message) <= 200 else message[:197] + "..."


def _is_file_field(schema: Mapping[str, Any]) -> bool:
    if schema.get("format") == "file":
        return True
    return any(_is_file_field(b) for b in schema.get("anyOf", []) + schema.get("oneOf", []))


class RequestValidator:
    """The input schema of one app, ready to check many requests fast."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        if not plainly_valid(schema):  # else jsonschema (and its import) are needed only for invalid values
            from jsonschema import Draft202012Validator
            from jsonschema.exceptions import SchemaError

            try:
                Draft202012Validator.check_schema(schema)
            except SchemaError as exc:
                raise SchemaDataError(f"the bundled input schema is invalid: {exc.message}") from exc
        self.schema = schema
        self.properties: Mapping[str, Mapping[str, Any]] = schema.get("properties", {})
        self.required: tuple[str, ...] = tuple(schema.get("required", ()))
        self.closed = schema.get("additionalProperties", True) is False
        self._fields: dict[str, Draft202012Validator] = {}  # made when a value needs one
        self._fast = {name: fast_accept(sub) for name, sub in self.properties.items()}
        # a simple field's only type: a value of another type gets its message without jsonschema
        self._type = {name: sub["type"] for name, sub in self.properties.items()
                      if self._fast[name] is not None and isinstance(sub.get("type"), str)}
        self._memo: dict[str, dict[tuple[type, Any], tuple[str, ...]]] = {n: {} for n in self.properties}
        extra = {k for k in schema if not k.startswith("x-")} - _DECOMPOSABLE
        self._whole = _validator(schema) if extra else None
        self.file_fields = {n: FileLimits.from_schema(s.get("x-file"))
                            for n, s in self.properties.items() if _is_file_field(s)}
        self.ignored_fields = frozenset(n for n, s in self.properties.items() if s.get("x-ignored-by-app"))

    def check_keys(self, keys: Iterable[str]) -> list[tuple[str | None, str]]:
        """Problems with the request's field names: ``(field or None, message)``."""
        present = list(keys)
        out: list[tuple[str | None, str]] = []
        if self.closed:
            for key in present:
                if key not in self.properties:
                    alias = next((n for n, sub in self.properties.items() if key in sub.get("x-aliases", ())), None)
                    hint = [alias] if alias else difflib.get_close_matches(key, list(self.properties), n=1)
                    suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
                    out.append((key, f"input.{key}: unknown field for this app{suggestion} "
                                     f"(fields: {', '.join(self.properties)})"))
        for name in self.required:
            if name not in present:
                out.append((None, f"input: missing required field {name!r}"))
        return out

    def check_field(self, name: str, value: Any) -> tuple[str, ...]:
        """Messages for one field's value (empty when valid). Unknown names are ignored."""
        if name not in self.properties:
            return ()
        fast = self._fast[name]
        if fast is not None and fast(value):
            return ()
        memo = self._memo[name]
        hashable = value is None or isinstance(value, str | int | float | bool)
        if hashable:
            known = memo.get((type(value), value))
            if known is not None:
                return known
        wanted = self._type.get(name)
        if wanted is not None and not PY_TYPES[wanted](value):  # what describe() says of a type error
            found: tuple[str, ...] = (f"input.{name}: {_wrong_type(_TYPE_NAMES[wanted], value)}",)
        else:
            validator = self._fields.get(name)
            if validator is None:
                sub = self.properties[name]
                if "$defs" in self.schema and "$defs" not in sub:  # its '#/$defs/...' references, resolvable
                    sub = {**sub, "$defs": self.schema["$defs"]}
                validator = self._fields[name] = _validator(sub)
            found = () if validator.is_valid(value) else tuple(_messages(name, validator.iter_errors(value)))
        if hashable and len(memo) < _MEMO_LIMIT:
            memo[(type(value), value)] = found
        return found

    @property
    def checks_whole(self) -> bool:
        """Whether requests are also checked whole (the schema has top-level constraints)."""
        return self._whole is not None

    def acceptor(self, name: str) -> Callable[[Any], bool]:
        """``value -> check_field(name, value) == ()``, as fast as the field allows."""
        fast = self._fast.get(name)
        check = self.check_field
        if fast is None:
            return lambda value: not check(name, value)
        accept = fast
        return lambda value: accept(value) or not check(name, value)

    def check(self, request: Mapping[str, Any]) -> list[FieldProblem]:
        """Every problem with one request's values."""
        problems = [FieldProblem((name,), msg) for name, value in request.items()
                    for msg in self.check_field(name, value)]
        if self._whole is not None and not problems:
            for err in self._whole.iter_errors(request):
                problems.append(FieldProblem(tuple(err.absolute_path), describe(err)))
        return problems


def _validator(schema: Mapping[str, Any]) -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema)


def _messages(name: str, errors: Iterable[ValidationError]) -> Iterable[str]:
    found = list(errors)
    # a value of the wrong type fails its other keywords too (enum, ...): say only the type
    mistyped = {tuple(e.absolute_path) for e in found if e.validator == "type"}
    found = [e for e in found if e.validator == "type" or tuple(e.absolute_path) not in mistyped]
    for err in sorted(found, key=lambda e: list(map(str, e.absolute_path))):
        where = ".".join(str(p) for p in (name, *err.absolute_path))
        yield f"input.{where}: {describe(err)}"
