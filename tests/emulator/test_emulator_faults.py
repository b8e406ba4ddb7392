"""Every fault knob, over real HTTP, with its effect on tasks and on the ledger."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from kling_pipeline.emulator import EmulatorServer, Faults, Latency

from .helpers import APP, assert_problem, get_task, run, submit, wait_terminal, wait_until


@pytest.fixture
def faulty(
    make_emu: Callable[..., EmulatorServer], make_client: Callable[..., httpx.Client]
) -> Callable[..., tuple[EmulatorServer, httpx.Client]]:
    def start(latency: float = 0.05, **faults: Any) -> tuple[EmulatorServer, httpx.Client]:
        emu = make_emu(latency=latency, faults=Faults(**faults))
        return emu, make_client(emu)

    return start


def test_task_failure_fails_the_task_and_bills_nothing(faulty: Callable[..., Any]) -> None:
    emu, api = faulty(task_failure_rate=1.0)

    task = wait_terminal(api, submit(api)["id"])

    assert task["status"] == 11 and task["output"] is None
    assert task["error"].startswith("Kling task failed:")
    assert emu.ledger()["total_microcents"] == 0


def test_provider_limit_fails_with_kling_code_1303_and_bills_nothing(faulty: Callable[..., Any]) -> None:
    emu, api = faulty(provider_limit_rate=1.0)

    task = wait_terminal(api, submit(api)["id"])

    assert task["status"] == 11
    assert "(code 1303)" in task["error"] and "concurrency/rate limit" in task["error"]
    assert emu.ledger()["charges"] == []


def test_reject_creates_an_already_ended_task(faulty: Callable[..., Any]) -> None:
    emu, api = faulty(reject_rate=1.0)

    created = submit(api, "refused")

    assert created["status"] == 13 and created["error"]
    assert get_task(api, created["id"])["status"] == 13
    ledger = emu.ledger()
    assert ledger["charges"] == []
    assert ledger["submissions"][0]["task_ids"] == [created["id"]]


def test_injected_429_creates_no_task_and_says_when_to_retry(faulty: Callable[..., Any]) -> None:
    emu, api = faulty(rate_limit_rate=1.0, rate_limit_retry_after=2.5)

    response = run(api)

    body = assert_problem(response, 429, "rate_limited")
    assert response.headers["retry-after"] == "3"
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert {"x-ratelimit-limit", "x-ratelimit-reset"} <= set(response.headers)
    assert body["retry_after"] == 2.5
    assert emu.tasks() == []


def test_server_errors_are_503_or_500_and_create_no_task(faulty: Callable[..., Any]) -> None:
    emu, api = faulty(server_error_rate=1.0, server_error_retry_after=4.0)

    answers = [run(api, f"prompt {i}") for i in range(12)]

    codes = {(r.status_code, r.json()["type"].rsplit("/", 1)[1]) for r in answers}
    assert codes == {(503, "app_maintenance"), (500, "entitlement_unavailable")}
    assert {r.headers["retry-after"] for r in answers if r.status_code == 503} == {"4"}
    assert all(r.headers["content-type"] == "application/problem+json" for r in answers)
    assert emu.tasks() == []


def test_excess_tasks_of_a_key_wait_queued_until_a_slot_frees(
    faulty: Callable[..., Any], make_client: Callable[..., httpx.Client]
) -> None:
    emu, api = faulty(latency=30.0, max_running_per_key=1)
    first, second, third = (submit(api, f"slot {i}")["id"] for i in range(3))

    def statuses() -> list[int]:
        return [get_task(api, t)["status"] for t in (first, second, third)]

    wait_until(lambda: statuses() == [7, 2, 2], what="one running, two queued")
    someone_else = make_client(emu, key="inf_other")
    other = submit(someone_else, "not limited by another key's tasks")["id"]
    wait_until(lambda: get_task(someone_else, other)["status"] == 7, what="the other key's task to run")

    api.post(f"/tasks/{first}/cancel")

    wait_until(lambda: statuses() == [12, 7, 2], what="the next task to start")


def test_raising_the_running_limit_at_runtime_admits_waiting_tasks(faulty: Callable[..., Any]) -> None:
    emu, api = faulty(latency=30.0, max_running_per_key=1)
    ids = [submit(api, f"slot {i}")["id"] for i in range(2)]
    wait_until(lambda: [get_task(api, t)["status"] for t in ids] == [7, 2], what="one queued")

    emu.set_faults(Faults(max_running_per_key=2))

    wait_until(lambda: [get_task(api, t)["status"] for t in ids] == [7, 7], what="both running")


def test_a_cut_stream_ends_abruptly_without_its_terminal_line(faulty: Callable[..., Any]) -> None:
    emu, api = faulty(latency=0.2, stream_cut_rate=1.0)
    task_id = submit(api)["id"]
    lines: list[dict[str, Any]] = []

    with pytest.raises(httpx.RemoteProtocolError), api.stream("GET", f"/tasks/{task_id}/stream") as response:
        lines.extend(json.loads(line) for line in response.iter_lines() if line.strip())

    assert lines and all(line.get("status", 0) < 10 for line in lines)
    assert wait_terminal(api, task_id)["status"] == 10  # the task itself is fine, and billed
    assert emu.ledger()["total_microcents"] == 2_800_000


def test_slow_downloads_still_deliver_every_byte(faulty: Callable[..., Any]) -> None:
    emu, api = faulty()
    uri = wait_terminal(api, submit(api)["id"])["output"]["image"]["uri"]
    fast = httpx.get(uri).content
    rate = 4 * len(fast)  # about a quarter of a second for the whole file
    emu.set_faults(Faults(download_bytes_per_second=rate))

    started = time.monotonic()
    with httpx.stream("GET", uri) as response:
        chunks = list(response.iter_raw())
    elapsed = time.monotonic() - started

    assert b"".join(chunks) == fast
    assert len(chunks) > 1
    assert elapsed >= 0.8 * len(fast) / rate  # a lower bound the throttle guarantees (sleeps), never flaky


def test_lost_response_raises_in_the_client_yet_the_task_runs_is_billed_once_and_is_listed(
    faulty: Callable[..., Any],
) -> None:
    emu, api = faulty(response_lost_rate=1.0, index_lag=0.2)
    body = {"app": APP, "input": {"prompt": "the answer never arrives", "n": 2}}

    with pytest.raises(httpx.TransportError):
        api.post("/apps/run", json=body)

    charge = wait_until(lambda: emu.ledger()["charges"], what="the charge")
    assert [c["input"] for c in charge] == [body["input"]]
    assert emu.ledger()["total_microcents"] == 2 * 2_800_000
    app_id = api.get("/apps/klingai/image-o1").json()["data"]["id"]
    query = {
        "filters": [{"field": "app_id", "operator": "eq", "value": app_id}],
        "sort": [{"field": "created_at", "dir": "desc"}],
    }
    items = wait_until(lambda: api.post("/tasks/list", json=query).json()["data"]["items"], what="the listing")
    assert [(i["id"], i["input"]) for i in items] == [(charge[0]["task_id"], body["input"])]
    assert emu.ledger()["submissions"][0]["count"] == 1


def test_fault_decisions_depend_on_seed_and_input_not_on_arrival_order(
    make_emu: Callable[..., EmulatorServer], make_client: Callable[..., httpx.Client]
) -> None:
    prompts = [f"prompt {i}" for i in range(16)]

    def failed(seed: int, order: list[str]) -> set[str]:
        emu = make_emu(seed=seed, faults=Faults(task_failure_rate=0.5))
        api = make_client(emu)
        tasks = {p: submit(api, p)["id"] for p in order}
        return {p for p, t in tasks.items() if wait_terminal(api, t)["status"] == 11}

    forward = failed(7, prompts)
    backward = failed(7, prompts[::-1])
    other_seed = failed(8, prompts)

    assert forward == backward
    assert 0 < len(forward) < len(prompts)
    assert other_seed != forward


def test_latency_samples_are_fixed_by_seed_and_input(
    make_emu: Callable[..., EmulatorServer], make_client: Callable[..., httpx.Client]
) -> None:
    def run_seconds(latency: Latency, seed: int = 0) -> dict[str, float]:
        emu = make_emu(latency=latency, seed=seed)
        api = make_client(emu)
        ids = {submit(api, f"latency {i}")["id"]: f"latency {i}" for i in range(6)}
        return {ids[t["id"]]: t["run_seconds"] for t in emu.tasks()}

    uniform = run_seconds(Latency.uniform(0.01, 0.2))
    lognormal = run_seconds(Latency.lognormal(0.05, 0.5))

    assert uniform == run_seconds(Latency.uniform(0.01, 0.2))
    assert uniform != run_seconds(Latency.uniform(0.01, 0.2), seed=1)
    assert all(0.01 <= s <= 0.2 for s in uniform.values()) and len(set(uniform.values())) == 6
    assert len(set(lognormal.values())) == 6 and all(s > 0 for s in lognormal.values())


def test_a_retry_of_the_same_input_gets_a_fresh_decision(faulty: Callable[..., Any]) -> None:
    emu, api = faulty(rate_limit_rate=0.5)

    codes = [run(api, "same input").status_code for _ in range(12)]

    assert set(codes) == {200, 429}
    assert len(emu.tasks()) == codes.count(200)


def test_faults_can_be_replaced_over_http(faulty: Callable[..., Any]) -> None:
    emu, api = faulty()

    response = httpx.post(f"{emu.base_url}/_emulator/faults", json={"reject_rate": 1.0, "index_lag": 0.5})

    assert response.status_code == 200
    assert response.json()["data"]["reject_rate"] == 1.0
    assert httpx.get(f"{emu.base_url}/_emulator/faults").json()["data"]["index_lag"] == 0.5
    assert submit(api)["status"] == 13
    bad = httpx.post(f"{emu.base_url}/_emulator/faults", json={"reject_rate": 2})
    assert "reject_rate must be a probability" in assert_problem(bad, 400, "invalid_request")["detail"]
    unknown = httpx.post(f"{emu.base_url}/_emulator/faults", json={"chaos": 1})
    assert "unknown fault setting(s): chaos" in assert_problem(unknown, 400, "invalid_request")["detail"]
