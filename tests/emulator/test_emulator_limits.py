"""Rate limits over real HTTP: which calls count against which class, the headers on every
answer, the 429s, the epoch form of Reset, changes at runtime and the counters."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from kling_pipeline.emulator import EmulatorServer, Limit, RateLimits

from .helpers import APP, assert_problem, run, submit, wait_terminal

RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")
FOREVER = 1e9
"""A window this long turns at multiples of 10^9 Unix seconds: the next turn is in 2033,
so no test run sees one (and its epoch Reset is exactly 2000000000)."""
SLOW = Limit(1, 3600.0, burst=2)
"""A bucket of 2 that refills one call an hour: no refill within a test."""
ROOMY = Limit(1_000_000, FOREVER, "window")
"""Enough for any test, still limited (its answers carry the headers)."""

Start = Callable[..., tuple[EmulatorServer, httpx.Client]]


@pytest.fixture
def limited(make_emu: Callable[..., EmulatorServer], make_client: Callable[..., httpx.Client]) -> Start:
    def start(**limits: Limit | bool | None) -> tuple[EmulatorServer, httpx.Client]:
        emu = make_emu(limits=RateLimits(**{"runs": ROOMY, "reads": ROOMY, "uploads": ROOMY, **limits}))
        return emu, make_client(emu)

    return start


def rate_headers(response: httpx.Response) -> tuple[str, ...]:
    return tuple(response.headers.get(name, "-") for name in RATE_HEADERS)


def test_runs_over_the_limit_get_429_with_retry_after_and_create_nothing(limited: Start) -> None:
    emu, api = limited(runs=SLOW)

    first, second, third = run(api, "a"), run(api, "b"), run(api, "c")

    assert (first.status_code, second.status_code) == (200, 200)
    assert rate_headers(first) == ("2", "1", "3600")  # an hour until the bucket is full again
    assert rate_headers(second) == ("2", "0", "7200")
    body = assert_problem(third, 429, "rate_limited")
    assert rate_headers(third) == ("2", "0", "7200")
    assert 3590 < body["retry_after"] <= 3600
    assert third.headers["retry-after"] == "3600"
    assert body["detail"].startswith("over the task-run rate limit for this API key (1 per 3600 s, burst 2); retry in")
    assert len(emu.tasks()) == 2
    assert emu.limit_stats()["runs"] == {"allowed": 2, "refused": 1}


def test_each_key_has_its_own_budget(limited: Start, make_client: Callable[..., httpx.Client]) -> None:
    emu, api = limited(runs=Limit(1, FOREVER, "window"))
    other = make_client(emu, key="inf_another_key")

    assert [run(api, "a").status_code, run(api, "b").status_code] == [200, 429]
    assert run(other, "c").status_code == 200


def test_a_full_window_refuses_until_it_turns_and_says_when(limited: Start) -> None:
    _, api = limited(runs=Limit(1, FOREVER, "window"))

    allowed, refused = run(api, "a"), run(api, "b")

    seconds_left = 2_000_000_000 - time.time()
    assert rate_headers(allowed)[:2] == ("1", "0")
    assert abs(int(allowed.headers["x-ratelimit-reset"]) - seconds_left) < 5
    assert_problem(refused, 429, "rate_limited")
    assert abs(int(refused.headers["retry-after"]) - seconds_left) < 5


def test_reset_can_be_sent_as_an_epoch_timestamp(limited: Start) -> None:
    _, api = limited(runs=Limit(1, FOREVER, "window"), reads=SLOW, reset_epoch=True)

    window = run(api, "a")
    bucket = api.get("/apps/klingai/image-o1")

    assert window.headers["x-ratelimit-reset"] == "2000000000"
    assert 0 < int(bucket.headers["x-ratelimit-reset"]) - time.time() <= 3601  # above 10^9: an epoch
    refused = run(api, "b")
    assert refused.headers["x-ratelimit-reset"] == "2000000000"
    assert abs(int(refused.headers["retry-after"]) - (2_000_000_000 - time.time())) < 5  # still seconds


def test_the_limit_is_checked_after_auth_and_before_the_body(limited: Start) -> None:
    emu, api = limited(runs=Limit(1, FOREVER, "window"))
    run(api, "spends the only call")

    refused = api.post("/apps/run", content=b"{not json")
    unknown = httpx.post(f"{emu.base_url}/apps/run", json={"app": APP, "input": {"prompt": "x"}})

    assert_problem(refused, 429, "rate_limited")
    assert_problem(unknown, 401, "unauthorized")
    assert rate_headers(unknown) == ("-", "-", "-")
    assert emu.limit_stats()["runs"] == {"allowed": 1, "refused": 1}


def test_error_answers_of_a_limited_class_carry_the_headers(limited: Start) -> None:
    _, api = limited(reads=SLOW, runs=SLOW)

    missing = api.get("/tasks/nope")
    invalid = run(api, "x", input={"n": 99})

    assert_problem(missing, 404, "not_found")
    assert rate_headers(missing) == ("2", "1", "3600")
    assert_problem(invalid, 422, "invalid_input")
    assert rate_headers(invalid) == ("2", "1", "3600")


def test_every_other_authenticated_call_is_a_read(limited: Start) -> None:
    emu, api = limited()
    task = wait_terminal(api, submit(api)["id"])  # polls GET /tasks/{id}
    reads_before = emu.limit_stats()["reads"]["allowed"]
    app_id = api.get(f"/apps/{APP}").json()["data"]["id"]

    answers = [
        api.get(f"/tasks/{task['id']}"),
        api.get(f"/tasks/{task['id']}/status"),
        api.get(f"/tasks/{task['id']}/stream"),
        api.post("/tasks/list", json={}),
        api.post(f"/store/apps/{app_id}/estimate", json={"input": {"prompt": "x"}}),
        api.post(f"/store/apps/{APP}/estimate", json={"input": {"prompt": "x"}}),
        api.post(f"/tasks/{task['id']}/cancel"),
        api.delete(f"/tasks/{task['id']}"),
    ]

    assert [rate_headers(r)[0] for r in answers] == ["1000000"] * len(answers)
    assert emu.limit_stats()["reads"]["allowed"] - reads_before == 1 + len(answers)
    assert emu.limit_stats()["runs"]["allowed"] == 1


def test_uploads_count_the_upload_request_only_and_downloads_are_free(limited: Start) -> None:
    emu, api = limited(uploads=Limit(1, FOREVER, "window"))

    created = api.post("/files", json={"files": [{"filename": "a.png", "content_type": "image/png"}]})
    put = httpx.put(created.json()["data"][0]["upload_url"], content=b"\x89PNG not really")
    fetched = httpx.get(created.json()["data"][0]["uri"])
    refused = api.post("/files", json={"files": [{"filename": "b.png"}]})
    admin = httpx.get(f"{emu.base_url}/_emulator/limits")

    assert created.status_code == 200 and rate_headers(created)[:2] == ("1", "0")
    assert (put.status_code, fetched.status_code, admin.status_code) == (200, 200, 200)
    assert rate_headers(put) == rate_headers(fetched) == rate_headers(admin) == ("-", "-", "-")
    assert_problem(refused, 429, "rate_limited")
    assert "over the upload rate limit" in refused.json()["detail"]
    assert emu.limit_stats() == {
        "runs": {"allowed": 0, "refused": 0},
        "reads": {"allowed": 0, "refused": 0},
        "uploads": {"allowed": 1, "refused": 1},
    }


def test_an_open_stream_is_one_read(limited: Start) -> None:
    emu, api = limited(reads=Limit(1, FOREVER, "window"))
    task_id = submit(api)["id"]

    with api.stream("GET", f"/tasks/{task_id}/stream") as stream:
        lines = [line for line in stream.iter_lines() if line]
        assert rate_headers(stream)[:2] == ("1", "0")

    assert '"status":10' in lines[-1]
    assert_problem(api.get(f"/tasks/{task_id}"), 429, "rate_limited")
    assert emu.limit_stats()["reads"] == {"allowed": 1, "refused": 1}


def test_without_limits_answers_carry_no_headers_and_calls_are_still_counted(
    make_emu: Callable[..., EmulatorServer], make_client: Callable[..., httpx.Client]
) -> None:
    emu = make_emu(limits=RateLimits.off())
    api = make_client(emu)

    answers = [run(api, f"p{i}") for i in range(60)]

    assert {r.status_code for r in answers} == {200}
    assert {rate_headers(r) for r in answers} == {("-", "-", "-")}
    assert emu.limit_stats()["runs"] == {"allowed": 60, "refused": 0}


def test_the_injected_429_fault_reports_the_limit_in_force(
    make_emu: Callable[..., EmulatorServer], make_client: Callable[..., httpx.Client]
) -> None:
    from kling_pipeline.emulator import Faults

    emu = make_emu(faults=Faults(rate_limit_rate=1.0, rate_limit_retry_after=2.5), limits=RateLimits(runs=SLOW))

    refused = run(make_client(emu))

    assert_problem(refused, 429, "rate_limited")
    assert (refused.headers["retry-after"], *rate_headers(refused)) == ("3", "2", "0", "3")
    assert emu.limit_stats()["runs"] == {"allowed": 1, "refused": 0}  # the limit let it through


def test_limits_change_at_runtime_over_http(limited: Start) -> None:
    emu, api = limited(runs=Limit(1000, 1.0, burst=1000))
    admin = f"{emu.base_url}/_emulator/limits"
    assert [run(api, f"p{i}").status_code for i in range(3)] == [200] * 3

    changed = httpx.post(admin, json={"runs": {"count": 1, "period": 3600, "burst": 1}, "reset_epoch": True})

    assert changed.status_code == 200
    data = changed.json()["data"]
    assert data["limits"]["runs"] == {"count": 1, "period": 3600.0, "shape": "bucket", "burst": 1}
    assert data["limits"]["reads"] == {"count": 1_000_000, "period": FOREVER, "shape": "window", "burst": None}
    assert data["limits"]["reset_epoch"] is True
    assert data["stats"]["runs"] == {"allowed": 3, "refused": 0}
    assert [run(api, "q1").status_code, run(api, "q2").status_code] == [200, 429]  # 1 token kept of 997
    assert httpx.get(admin).json()["data"]["stats"]["runs"] == {"allowed": 4, "refused": 1}
    httpx.post(admin, json={"runs": None})
    assert run(api, "q3").status_code == 200 and rate_headers(run(api, "q4")) == ("-", "-", "-")
    assert emu.limits() == RateLimits(runs=None, reads=ROOMY, uploads=ROOMY, reset_epoch=True)


def test_bad_limit_changes_are_refused_and_change_nothing(limited: Start) -> None:
    emu, _ = limited(runs=SLOW)
    admin = f"{emu.base_url}/_emulator/limits"

    answers = [
        httpx.post(admin, json={"runs": {"count": 0}}),
        httpx.post(admin, json={"runs": "fast"}),
        httpx.post(admin, json={"writes": None}),
        httpx.post(admin, content=b"[1]"),
    ]

    assert [r.status_code for r in answers] == [400] * 4
    assert answers[0].json()["detail"] == "runs: a limit's count must be a whole number >= 1, got 0"
    assert emu.limits().runs == SLOW


def test_set_limits_from_python_takes_effect_at_once(limited: Start) -> None:
    emu, api = limited(runs=Limit(3, FOREVER, "window"))
    assert run(api, "a").status_code == 200

    emu.set_limits(RateLimits(runs=Limit(2, FOREVER, "window")))  # the call made still counts

    assert [run(api, "b").status_code, run(api, "c").status_code] == [200, 429]
    assert emu.limits() == RateLimits(runs=Limit(2, FOREVER, "window"))
    assert emu.limit_stats()["runs"] == {"allowed": 2, "refused": 1}


def test_the_app_lists_its_versions_for_a_pre_flight_check(limited: Start) -> None:
    _, api = limited()

    app = api.get(f"/apps/{APP}").json()["data"]

    assert app["version_id"] == "0pbaxv40"
    assert app["versions"] == [{"id": "0pbaxv40"}]
    assert_problem(run(api, app=f"{APP}@nope"), 404, "not_found")
