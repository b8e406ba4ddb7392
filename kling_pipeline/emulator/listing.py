"""``POST /tasks/list``: filters, sort, keyset cursor and projection (pure; no I/O)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .ident import canonical_json
from .tasks import Status, Task

__all__ = ["ListQuery", "ListQueryError", "parse_list_query", "run_list_query"]

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


class ListQueryError(ValueError):
    """The listing request is malformed (answered with 400)."""


Getter = Callable[[Task], Any]


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


_FIELDS: dict[str, Getter] = {
    "id": lambda t: t.id,
    "app": lambda t: t.app,
    "app_id": lambda t: t.app_id,
    "version_id": lambda t: t.version_id,
    "function": lambda t: t.function,
    "status": lambda t: int(t.status),
    "created_at": lambda t: _time(t.created_at),
    "updated_at": lambda t: _time(t.updated_at),
    "session_id": lambda t: t.session_id,
    "webhook": lambda t: t.webhook,
}
_TIME_FIELDS = {"created_at", "updated_at"}
_SORT_FIELDS = {"created_at"}
_NO_VALUE = {"is_null", "is_not_null", "is_empty", "is_not_empty"}
_ORDERED = {"gt", "gte", "lt", "lte"}
_STRING_OPS = {"like", "ilike", "contains", "not_contains"}
OPERATORS = frozenset({"eq", "neq", "in", "not_in", *_ORDERED, *_STRING_OPS, *_NO_VALUE})
_TASK_KEYS = frozenset(
    {
        "id", "status", "progress", "app", "app_id", "version_id", "function", "input", "output", "error",
        "logs", "events", "usage_events", "webhook", "session_id", "created_at", "updated_at",
    }
)  # fmt: skip

Predicate = Callable[[Task], bool]
_EMPTINESS: dict[str, Callable[[Any], bool]] = {
    "is_null": lambda v: v is None,
    "is_not_null": lambda v: v is not None,
    "is_empty": lambda v: v is None or v == "",
    "is_not_empty": lambda v: not (v is None or v == ""),
}


@dataclass(frozen=True, slots=True)
class ListQuery:
    limit: int
    descending: bool
    after_seq: int | None
    predicates: tuple[Predicate, ...]
    fields: tuple[str, ...] | None


def _coerce(field: str, value: object) -> Any:
    """The filter value in the same type as the field's getter returns."""
    if field == "status":
        try:
            return int(Status.parse(value))
        except ValueError:
            raise ListQueryError(f"filter on 'status': {value!r} is not a status number or name") from None
    if field in _TIME_FIELDS:
        moment = None
        if isinstance(value, str):
            try:
                moment = _time(value)
            except ValueError:
                moment = None
        if moment is None or moment.tzinfo is None:
            raise ListQueryError(f"filter on {field!r}: {value!r} is not an ISO 8601 timestamp with a time zone")
        return moment
    if value is not None and not isinstance(value, str):
        raise ListQueryError(f"filter on {field!r}: expected a string, got {value!r}")
    return value


def _like(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile(f"^{body}$", re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _predicate(raw: object) -> Predicate:
    if not isinstance(raw, Mapping):
        raise ListQueryError(f"each filter must be an object with field, operator, value; got {raw!r}")
    field, op = raw.get("field"), raw.get("operator")
    if not isinstance(field, str) or field not in _FIELDS:
        raise ListQueryError(f"unknown filter field {field!r} (known: {', '.join(sorted(_FIELDS))})")
    if not isinstance(op, str) or op not in OPERATORS:
        raise ListQueryError(f"unknown filter operator {op!r} (known: {', '.join(sorted(OPERATORS))})")
    get = _FIELDS[field]
    value = raw.get("value")
    if op in _NO_VALUE:
        check = _EMPTINESS[op]
        return lambda t: check(get(t))
    if op in {"in", "not_in"}:
        if not isinstance(value, list):
            raise ListQueryError(f"operator {op!r} on {field!r} needs a list value, got {value!r}")
        members = [_coerce(field, v) for v in value]
        if op == "in":
            return lambda t: get(t) in members
        return lambda t: get(t) not in members
    if op in _STRING_OPS:
        if field in _TIME_FIELDS or field == "status" or not isinstance(value, str):
            raise ListQueryError(f"operator {op!r} needs a string field and a string value")
        text = value
        if op in {"like", "ilike"}:
            regex = _like(text, ignore_case=op == "ilike")
            return lambda t: isinstance(get(t), str) and regex.match(get(t)) is not None
        if op == "contains":
            return lambda t: isinstance(get(t), str) and text in get(t)
        return lambda t: not (isinstance(get(t), str) and text in get(t))
    target = _coerce(field, value)
    if op == "eq":
        return lambda t: bool(get(t) == target)
    if op == "neq":
        return lambda t: bool(get(t) != target)
    if target is None:
        raise ListQueryError(f"operator {op!r} on {field!r} needs a value")
    compare: dict[str, Callable[[Any, Any], bool]] = {
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }
    cmp = compare[op]
    return lambda t: (v := get(t)) is not None and cmp(v, target)


def _search(raw: object) -> Predicate:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("term"), str):
        raise ListQueryError('search must be {"term": string, "exact"?: bool}')
    term = str(raw["term"])
    if raw.get("exact"):
        return lambda t: t.input.get("prompt") == term
    lowered = term.lower()
    return lambda t: lowered in canonical_json(t.input).lower()


def encode_cursor(seq: int, descending: bool) -> str:
    raw = json.dumps({"after": seq, "desc": descending}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: object, descending: bool) -> int:
    if not isinstance(cursor, str) or not cursor:
        raise ListQueryError("cursor must be a non-empty string from a previous next_cursor")
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        seq, desc = data["after"], data["desc"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ListQueryError("cursor is not one this service issued") from None
    if not isinstance(seq, int) or desc is not descending:
        raise ListQueryError("cursor does not belong to this sort order")
    return seq


def _sort(raw: object) -> bool:
    """True for newest first (the default)."""
    if raw is None:
        return True
    if not isinstance(raw, list):
        raise ListQueryError('sort must be a list of {"field", "dir"}')
    descending = True
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping) or item.get("field") not in _SORT_FIELDS:
            raise ListQueryError(f"sort[{i}]: can sort only by {', '.join(sorted(_SORT_FIELDS))}")
        direction = item.get("dir", "asc")
        if direction not in ("asc", "desc"):
            raise ListQueryError(f"sort[{i}]: dir must be 'asc' or 'desc', got {direction!r}")
        if i == 0:
            descending = direction == "desc"
    return descending


def parse_list_query(body: Mapping[str, Any]) -> ListQuery:
    known = {"limit", "cursor", "filters", "sort", "fields", "search"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise ListQueryError(f"unknown key(s) in listing request: {', '.join(unknown)}")
    limit = body.get("limit", DEFAULT_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ListQueryError(f"limit must be a positive integer, got {limit!r}")
    filters = body.get("filters") or []
    if not isinstance(filters, list):
        raise ListQueryError("filters must be a list")
    predicates = [_predicate(f) for f in filters]
    if body.get("search") is not None:
        predicates.append(_search(body["search"]))
    descending = _sort(body.get("sort"))
    cursor = body.get("cursor")
    after = None if cursor is None else _decode_cursor(cursor, descending)
    fields = body.get("fields")
    if fields is not None:
        if not isinstance(fields, list) or not all(isinstance(f, str) and f in _TASK_KEYS for f in fields):
            raise ListQueryError(f"fields must be a list of task keys ({', '.join(sorted(_TASK_KEYS))})")
        fields = tuple(dict.fromkeys(["id", *fields]))
    return ListQuery(min(limit, MAX_LIMIT), descending, after, tuple(predicates), fields)


def run_list_query(query: ListQuery, tasks: Sequence[Task], visible: Predicate) -> dict[str, Any]:
    """``tasks`` in creation order; returns the ``data`` of the answer."""
    ordered: Iterable[Task] = reversed(tasks) if query.descending else tasks
    items: list[Task] = []
    has_next = False
    for task in ordered:
        if query.after_seq is not None and (
            task.seq >= query.after_seq if query.descending else task.seq <= query.after_seq
        ):
            continue
        if not visible(task) or not all(p(task) for p in query.predicates):
            continue
        if len(items) == query.limit:
            has_next = True
            break
        items.append(task)
    rows = [t.to_dict() for t in items]
    if query.fields is not None:
        rows = [{k: row[k] for k in query.fields} for row in rows]
    next_cursor = encode_cursor(items[-1].seq, query.descending) if has_next else None
    return {"items": rows, "next_cursor": next_cursor, "has_next": has_next}
