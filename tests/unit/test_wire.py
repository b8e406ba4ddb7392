"""wire: statuses, envelopes, problem+json, output files, billing, TaskView — read defensively."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kling_pipeline.api.wire import (
    Problem,
    Status,
    TaskView,
    billed_units,
    parse_problem,
    parse_status,
    unwrap,
)

# JSON values, as json.loads would give them (with huge numbers and NaN, which Python's json accepts)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


# --- statuses ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "expected"), [
    (10, Status.COMPLETED), (11, Status.FAILED), (12, Status.CANCELLED), (13, Status.REJECTED),
    *[(n, Status.PENDING) for n in range(1, 10)],
    (0, Status.UNKNOWN), (14, Status.UNKNOWN), (-1, Status.UNKNOWN), (10**30, Status.UNKNOWN),
])
def test_status_numbers(raw: int, expected: Status) -> None:
    assert parse_status(raw) is expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("completed", Status.COMPLETED), ("failed", Status.FAILED), ("cancelled", Status.CANCELLED),
    ("canceled", Status.CANCELLED), ("rejected", Status.REJECTED), ("  Completed\n", Status.COMPLETED),
    ("RUNNING", Status.PENDING), ("received", Status.PENDING), ("queued", Status.PENDING),
    ("dispatched", Status.PENDING), ("preparing", Status.PENDING), ("serving", Status.PENDING),
    ("setting_up", Status.PENDING), ("cancelling", Status.PENDING), ("uploading", Status.PENDING),
    ("unknown", Status.UNKNOWN), ("done", Status.UNKNOWN), ("", Status.UNKNOWN),
])
def test_status_names(raw: str, expected: Status) -> None:
    assert parse_status(raw) is expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("10", Status.COMPLETED), (" 11 ", Status.FAILED), ("12", Status.CANCELLED), ("13", Status.REJECTED),
    ("7", Status.PENDING), ("0", Status.UNKNOWN), ("14", Status.UNKNOWN), ("010", Status.COMPLETED),
    ("-11", Status.UNKNOWN), ("1.0", Status.UNKNOWN),
    # digits that are not ASCII, and more digits than int() accepts: no crash, just unknown
    ("\u00b2", Status.UNKNOWN), ("\u0661\u0660", Status.UNKNOWN), ("9" * 5000, Status.UNKNOWN),
])
def test_status_strings_of_digits(raw: str, expected: Status) -> None:
    assert parse_status(raw) is expected


@pytest.mark.parametrize("raw", [True, False, None, 10.0, 11.5, [10], {"status": 10}, b"10"])
def test_status_garbage_is_unknown(raw: Any) -> None:
    # True == 1 and False == 0 as ints: a bool must not pass for a number
    assert parse_status(raw) is Status.UNKNOWN


def test_terminal_statuses() -> None:
    assert {s for s in Status if s.terminal} == {Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.REJECTED}


@given(json_values)
def test_status_never_raises(raw: Any) -> None:
    assert isinstance(parse_status(raw), Status)


@given(st.text())
def test_status_text_never_raises(raw: str) -> None:
    assert isinstance(parse_status(raw), Status)


# --- envelopes --------------------------------------------------------------------------------------------------

TASK = {"id": "t1", "status": 7, "input": {"prompt": "x"}}


@pytest.mark.parametrize("payload", [
    {"data": TASK},
    {"data": TASK, "messages": ["hello"]},
    {"success": True, "data": TASK},
    {"success": True, "data": TASK, "meta": {"page": 1}},
    TASK,
])
def test_unwrap_accepts_the_three_shapes(payload: Any) -> None:
    assert unwrap(payload) == TASK


def test_unwrap_leaves_a_task_with_a_data_field_alone() -> None:
    task = {"id": "t1", "status": 10, "data": {"something": "of the task"}}
    assert unwrap(task) is task


def test_unwrap_leaves_an_envelope_with_other_keys_alone() -> None:
    payload = {"data": TASK, "request_id": "r1"}
    assert unwrap(payload) is payload


@pytest.mark.parametrize("payload", [None, [TASK], "text", 3, {}])
def test_unwrap_non_envelopes_unchanged(payload: Any) -> None:
    assert unwrap(payload) == payload


def test_unwrap_list_data() -> None:
    assert unwrap({"data": [{"uri": "u"}]}) == [{"uri": "u"}]


# --- problem+json -----------------------------------------------------------------------------------------------

def test_problem_full() -> None:
    body = json.dumps({
        "type": "https://inference.sh/problems/requirements_not_met", "title": "Requirements not met",
        "status": 412, "detail": "this app needs an integration",
        "errors": [{"type": "integration", "key": "openai", "message": "Connect OpenAI", "action": "connect"},
                   "not an object", 3],
    }).encode()
    assert parse_problem(412, body) == Problem(
        412, "requirements_not_met", "this app needs an integration",
        ({"type": "integration", "key": "openai", "message": "Connect OpenAI", "action": "connect"},))


@pytest.mark.parametrize(("payload", "code", "detail"), [
    ({"type": "https://x/errors/rate_limited/", "title": "Too many"}, "rate_limited", "Too many"),
    ({"type": "rate_limited", "message": "slow down"}, "rate_limited", "slow down"),
    ({"code": "app_retired", "error": "gone"}, "app_retired", "gone"),
    ({"type": "", "code": "x/y/z", "detail": "", "title": "t"}, "z", "t"),
    ({"detail": {"nested": 1}}, "", "{'nested': 1}"),
    ({}, "", ""),
    ({"type": None, "detail": None}, "", ""),
])
def test_problem_fields(payload: dict[str, Any], code: str, detail: str) -> None:
    problem = parse_problem(400, json.dumps(payload).encode())
    assert (problem.status, problem.code, problem.detail, problem.errors) == (400, code, detail, ())


def test_problem_detail_is_cut_at_500() -> None:
    assert parse_problem(500, json.dumps({"detail": "d" * 2000}).encode()).detail == "d" * 500


@pytest.mark.parametrize(("body", "detail"), [
    (b"", ""),
    (b"  Bad Gateway\n", "Bad Gateway"),
    (b"<html>" + b"x" * 1000, "<html>" + "x" * 294),
    (b"[1, 2]", "[1, 2]"),
    (b'"just a string"', '"just a string"'),
    (b"\xff\xfe bytes", "\ufffd\ufffd bytes"),
])
def test_problem_from_non_problem_bodies(body: bytes, detail: str) -> None:
    assert parse_problem(502, body) == Problem(502, "", detail)


def test_problem_deeply_nested_json_does_not_raise() -> None:
    problem = parse_problem(500, b"[" * 100_000)
    assert (problem.status, problem.code) == (500, "")
    assert parse_problem(500, b'{"a":' * 50_000).status == 500


@given(st.binary(max_size=2000), st.integers(min_value=100, max_value=599))
def test_problem_never_raises_on_any_bytes(body: bytes, status: int) -> None:
    problem = parse_problem(status, body)
    assert problem.status == status
    assert isinstance(problem.code, str) and isinstance(problem.detail, str)


@given(st.dictionaries(st.sampled_from(["type", "code", "detail", "title", "message", "error", "errors", "x"]),
                       json_values, max_size=6))
def test_problem_never_raises_on_any_json_object(payload: dict[str, Any]) -> None:
    problem = parse_problem(422, json.dumps(payload).encode())
    assert problem.status == 422
    assert len(problem.detail) <= 500
    assert all(isinstance(e, dict) for e in problem.errors)


# --- output files -----------------------------------------------------------------------------------------------

# --- billing ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("task", "units"), [
    ({}, None),
    ({"usage_events": None}, None),
    ({"usage_events": {"unit": "image", "quantity": 3}}, None),
    ({"usage_events": []}, 0),
    ({"usage_events": [{"type": "image", "quantity": 4, "unit": "image"}]}, 4),
    ({"usage_events": [{"quantity": 2, "unit": "image"}, {"quantity": 3, "unit": "image"}]}, 5),
    ({"usage_events": [{"quantity": 2, "unit": "image"}, {"quantity": 30, "unit": "second"}]}, 2),
    ({"usage_events": [{"type": "image", "quantity": 2, "unit": "item"}]}, 2),
    ({"usage_events": [{"quantity": 2.9, "unit": "image"}]}, 2),
    ({"usage_events": [{"quantity": 10**400, "unit": "image"}]}, 10**400),
    ({"usage_events": [{"quantity": True, "unit": "image"}, {"quantity": "3", "unit": "image"}]}, 0),
    ({"usage_events": ["image", None, 3, {"unit": "image"}]}, 0),
])
def test_billed_units(task: dict[str, Any], units: int | None) -> None:
    assert billed_units(task, "image") == units


def test_billed_units_ignores_non_finite_quantities() -> None:
    task = json.loads('{"usage_events": [{"unit": "image", "quantity": NaN}, {"unit": "image", "quantity": Infinity},'
                      ' {"unit": "image", "quantity": 1}]}')
    assert billed_units(task, "image") == 1


@given(json_values)
def test_billed_units_never_raises(events: Any) -> None:
    units = billed_units({"usage_events": events}, "image")
    assert units is None or isinstance(units, int)


# --- TaskView ---------------------------------------------------------------------------------------------------

def test_taskview_parse() -> None:
    task = {"id": "t1", "status": "running", "output": {"image": "u"}, "error": None, "progress": 42,
            "created_at": "2026-01-01T00:00:00Z", "extra": 1}
    view = TaskView.parse(task)
    assert view == TaskView(id="t1", status=Status.PENDING, raw_status="running", output={"image": "u"}, error=None,
                            progress=42.0, created_at="2026-01-01T00:00:00Z", task=task)
    assert view.task is task


@pytest.mark.parametrize("task", [None, "t1", ["t1"], {}, {"id": ""}, {"id": 5}, {"id": None, "status": 10}])
def test_taskview_without_an_id(task: Any) -> None:
    assert TaskView.parse(task) is None


@pytest.mark.parametrize(("error", "shown"), [
    ("boom", "boom"), ({"code": 1303, "message": "limit"}, '{"code": 1303, "message": "limit"}'),
    (["a"], '["a"]'), ("", None), ({}, None), (None, None), (0, None),
])
def test_taskview_error(error: Any, shown: str | None) -> None:
    view = TaskView.parse({"id": "t", "error": error})
    assert view is not None and view.error == shown


@pytest.mark.parametrize(("progress", "value"), [
    (50, 50.0), (12.5, 12.5), (True, None), ("50", None), (None, None), (10**400, None),
])
def test_taskview_progress(progress: Any, value: float | None) -> None:
    view = TaskView.parse({"id": "t", "progress": progress})
    assert view is not None and view.progress == value


def test_taskview_odd_fields() -> None:
    view = TaskView.parse({"id": "t", "status": True, "created_at": 1700000000})
    assert view is not None
    assert (view.status, view.raw_status, view.created_at, view.output) == (Status.UNKNOWN, True, None, None)


@given(st.dictionaries(st.sampled_from(["status", "output", "error", "progress", "created_at", "x"]), json_values))
def test_taskview_never_raises(fields: dict[str, Any]) -> None:
    view = TaskView.parse({"id": "t", **fields})
    assert view is not None and view.id == "t"
