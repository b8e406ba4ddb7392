"""``POST /tasks/list``: filters, sort, cursor, per-key scope and the index lag."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from kling_pipeline.emulator import EmulatorServer, Faults

from .helpers import APP, assert_problem, submit, wait_terminal, wait_until


def listing(api: httpx.Client, **body: Any) -> dict[str, Any]:
    response = api.post("/tasks/list", json=body)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def ids(data: dict[str, Any]) -> list[str]:
    return [item["id"] for item in data["items"]]


@pytest.fixture
def three(api: httpx.Client) -> list[dict[str, Any]]:
    """Three completed tasks, oldest first."""
    tasks = [submit(api, f"listed {i}") for i in range(3)]
    return [wait_terminal(api, t["id"]) for t in tasks]


def test_default_listing_is_newest_first_with_whole_tasks(api: httpx.Client, three: list[dict[str, Any]]) -> None:
    data = listing(api)

    assert ids(data) == [t["id"] for t in reversed(three)]
    assert data["items"][0] == three[-1]
    assert data["has_next"] is False and data["next_cursor"] is None


def test_cursor_pages_through_everything_once(api: httpx.Client, three: list[dict[str, Any]]) -> None:
    seen: list[str] = []
    body: dict[str, Any] = {"limit": 2, "sort": [{"field": "created_at", "dir": "asc"}]}
    pages = 0
    while True:
        data = listing(api, **body)
        seen += ids(data)
        pages += 1
        if not data["has_next"]:
            break
        body["cursor"] = data["next_cursor"]

    assert pages == 2
    assert seen == [t["id"] for t in three]


def test_filters_on_app_status_and_created_at(api: httpx.Client, three: list[dict[str, Any]]) -> None:
    app_id = api.get("/apps/klingai/image-o1").json()["data"]["id"]
    since = three[1]["created_at"]

    def matching(*filters: dict[str, Any]) -> list[str]:
        return ids(listing(api, filters=list(filters), sort=[{"field": "created_at", "dir": "asc"}]))

    everything = [t["id"] for t in three]
    assert matching({"field": "app_id", "operator": "eq", "value": app_id}) == everything
    assert matching({"field": "app_id", "operator": "eq", "value": APP}) == []  # app_id is the opaque id
    assert matching({"field": "app", "operator": "eq", "value": APP}) == everything
    assert matching({"field": "created_at", "operator": "gte", "value": since}) == everything[1:]
    assert matching({"field": "created_at", "operator": "gt", "value": since}) == everything[2:]
    assert matching({"field": "created_at", "operator": "lt", "value": since}) == everything[:1]
    assert matching({"field": "created_at", "operator": "lte", "value": since}) == everything[:2]
    assert matching({"field": "status", "operator": "eq", "value": 10}) == everything
    assert matching({"field": "status", "operator": "eq", "value": "completed"}) == everything
    assert matching({"field": "status", "operator": "neq", "value": 10}) == []
    assert matching({"field": "status", "operator": "in", "value": [11, "cancelled"]}) == []
    assert matching({"field": "status", "operator": "not_in", "value": [11, 12]}) == everything
    assert matching({"field": "id", "operator": "in", "value": everything[:2]}) == everything[:2]
    assert matching({"field": "webhook", "operator": "is_null"}) == everything


def test_search_and_field_projection(api: httpx.Client, three: list[dict[str, Any]]) -> None:
    found = listing(api, search={"term": "LISTED 1"}, fields=["status", "input"])

    assert found["items"] == [{"id": three[1]["id"], "status": 10, "input": {"prompt": "listed 1"}}]
    assert ids(listing(api, search={"term": "listed 2", "exact": True})) == [three[2]["id"]]


def test_only_the_callers_tasks_are_listed(
    emu: EmulatorServer, api: httpx.Client, make_client: Callable[..., httpx.Client], three: list[dict[str, Any]]
) -> None:
    other = make_client(emu, key="inf_other_account")
    submit(other, "theirs")

    assert len(listing(api)["items"]) == 3
    assert [i["input"]["prompt"] for i in listing(other)["items"]] == ["theirs"]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"filters": [{"field": "colour", "operator": "eq", "value": 1}]}, "unknown filter field 'colour'"),
        ({"filters": [{"field": "status", "operator": "approx", "value": 1}]}, "unknown filter operator 'approx'"),
        ({"filters": [{"field": "status", "operator": "eq", "value": "done"}]}, "is not a status number or name"),
        ({"filters": [{"field": "created_at", "operator": "gt", "value": "yesterday"}]}, "ISO 8601"),
        ({"filters": [{"field": "status", "operator": "in", "value": 10}]}, "needs a list value"),
        ({"filters": "status=10"}, "filters must be a list"),
        ({"sort": [{"field": "prompt", "dir": "asc"}]}, "can sort only by created_at"),
        ({"sort": [{"field": "created_at", "dir": "up"}]}, "dir must be 'asc' or 'desc'"),
        ({"limit": 0}, "limit must be a positive integer"),
        ({"cursor": "garbage!"}, "cursor is not one this service issued"),
        ({"fields": ["secret"]}, "fields must be a list of task keys"),
        ({"page": 2}, "unknown key(s) in listing request: page"),
    ],
)
def test_bad_listing_requests_are_400_problems(api: httpx.Client, body: dict[str, Any], detail: str) -> None:
    problem = assert_problem(api.post("/tasks/list", json=body), 400, "invalid_request")

    assert detail in problem["detail"]


def test_a_cursor_is_tied_to_its_sort_order(api: httpx.Client, three: list[dict[str, Any]]) -> None:
    cursor = listing(api, limit=1)["next_cursor"]

    problem = assert_problem(
        api.post("/tasks/list", json={"cursor": cursor, "sort": [{"field": "created_at", "dir": "asc"}]}),
        400,
        "invalid_request",
    )
    assert problem["detail"] == "cursor does not belong to this sort order"


def test_a_task_is_not_listed_within_the_index_lag(
    make_emu: Callable[..., EmulatorServer], make_client: Callable[..., httpx.Client]
) -> None:
    emu = make_emu(faults=Faults(index_lag=3600.0))
    api = make_client(emu)

    task = wait_terminal(api, submit(api, "lagging")["id"])  # direct reads see it at once

    assert listing(api)["items"] == []
    emu.set_faults(Faults(index_lag=0.0))
    assert ids(listing(api)) == [task["id"]]


def test_a_task_shows_up_in_the_listing_once_the_lag_has_passed(
    make_emu: Callable[..., EmulatorServer], make_client: Callable[..., httpx.Client]
) -> None:
    emu = make_emu(faults=Faults(index_lag=0.3))
    api = make_client(emu)

    task = submit(api, "lagging")

    wait_until(lambda: ids(listing(api)) == [task["id"]], what="the task to be indexed")
