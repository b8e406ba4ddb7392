"""The API endpoints over real HTTP with httpx: run, tasks, stream, cancel, delete, apps, estimate."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from kling_pipeline.emulator import EmulatorServer
from kling_pipeline.emulator.state import app_id_for

from .helpers import APP, KEY, PINNED, assert_problem, get_task, read_stream, run, submit, wait_terminal


def test_run_answers_the_created_task_in_a_data_envelope(api: httpx.Client) -> None:
    response = run(api, "a teapot", app=PINNED, input={"n": 2, "resolution": "2k"})

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    task = response.json()["data"]
    assert task["status"] == 1
    assert task["input"] == {"prompt": "a teapot", "n": 2, "resolution": "2k"}
    assert task["app"] == APP and task["version_id"] == "0pbaxv40"
    assert task["output"] is None and task["error"] is None
    assert task["created_at"].endswith("Z") and task["created_at"] == task["updated_at"]
    assert {"id", "logs", "events", "usage_events", "webhook", "session_id"} <= set(task)


def test_completed_task_has_output_usage_events_and_status_history(api: httpx.Client) -> None:
    task = wait_terminal(api, submit(api, "history", input={"n": 3})["id"])

    assert task["status"] == 10 and task["progress"] == 100
    assert task["output"]["output_meta"]["outputs"] == [{"type": "image", "count": 3, "extra": {}}]
    assert task["usage_events"] == [{"type": "image", "model": "kling-image-o1", "quantity": 3, "unit": "image"}]
    assert [e["status"] for e in task["events"]] == [1, 2, 7, 9, 10]
    assert [e["name"] for e in task["events"]][-1] == "completed"


def test_status_endpoint_is_small(api: httpx.Client) -> None:
    task_id = submit(api)["id"]
    wait_terminal(api, task_id)

    status = api.get(f"/tasks/{task_id}/status").json()["data"]

    assert status["id"] == task_id and status["status"] == 10
    assert set(status) == {"id", "status", "progress", "error", "updated_at"}


def test_stream_sends_each_change_then_the_final_task_with_its_output(
    make_emu: Callable[..., EmulatorServer], make_client: Callable[..., httpx.Client]
) -> None:
    emu = make_emu(latency=1.0, progress_steps=4, heartbeat_interval=30.0)
    api = make_client(emu)
    task_id = submit(api, "stream me")["id"]

    lines = read_stream(api, task_id)

    assert all(line["id"] == task_id for line in lines)
    progress = [line["progress"] for line in lines if line["status"] == 7]
    assert progress == sorted(set(progress)) and set(progress) <= {0, 25, 50, 75} and 75 in progress
    assert [line["status"] for line in lines][-2:] == [9, 10]
    assert lines[-1]["output"]["image"]["content_type"] == "image/png"
    assert all(line["output"] is None for line in lines[:-1])


def test_stream_sends_heartbeats_while_nothing_happens(
    make_emu: Callable[..., EmulatorServer], make_client: Callable[..., httpx.Client]
) -> None:
    emu = make_emu(latency=0.6, heartbeat_interval=0.1, max_progress_interval=5.0, min_progress_interval=5.0)
    api = make_client(emu)

    lines = read_stream(api, submit(api)["id"])

    assert {"type": "heartbeat"} in lines
    assert lines[-1]["status"] == 10


def test_stream_of_a_finished_task_sends_the_final_line_and_ends(api: httpx.Client) -> None:
    task_id = submit(api)["id"]
    final = wait_terminal(api, task_id)

    lines = read_stream(api, task_id)

    assert lines == [final]


def test_cancel_moves_a_running_task_to_cancelled_and_bills_nothing(
    make_emu: Callable[..., EmulatorServer], make_client: Callable[..., httpx.Client]
) -> None:
    emu = make_emu(latency=30.0)
    api = make_client(emu)
    task_id = submit(api)["id"]

    response = api.post(f"/tasks/{task_id}/cancel", json={"force": True})

    assert response.status_code == 200
    assert response.json()["data"]["status"] == 12
    assert get_task(api, task_id)["status"] == 12
    assert emu.ledger()["charges"] == [] and emu.ledger()["total_microcents"] == 0
    body = assert_problem(api.post(f"/tasks/{task_id}/cancel"), 409, "invalid_transition")
    assert "cancelled" in body["detail"]


def test_cancel_of_a_completed_task_is_an_invalid_transition(api: httpx.Client) -> None:
    task_id = submit(api)["id"]
    wait_terminal(api, task_id)

    assert_problem(api.post(f"/tasks/{task_id}/cancel"), 409, "invalid_transition")
    assert get_task(api, task_id)["status"] == 10


def test_delete_removes_the_task_and_with_files_its_output(api: httpx.Client) -> None:
    kept, gone = submit(api, "keep files")["id"], submit(api, "drop files")["id"]
    kept_uri = wait_terminal(api, kept)["output"]["image"]["uri"]
    gone_uri = wait_terminal(api, gone)["output"]["image"]["uri"]

    assert api.delete(f"/tasks/{kept}").status_code == 204
    assert api.delete(f"/tasks/{gone}", params={"files": "true"}).status_code == 204

    assert_problem(api.get(f"/tasks/{kept}"), 404, "not_found")
    assert httpx.get(kept_uri).status_code == 200
    assert_problem(httpx.get(gone_uri), 404, "not_found")


def test_unknown_task_is_404_on_every_task_endpoint(api: httpx.Client) -> None:
    for method, path in [
        ("GET", "/tasks/nope"),
        ("GET", "/tasks/nope/status"),
        ("GET", "/tasks/nope/stream"),
        ("POST", "/tasks/nope/cancel"),
        ("DELETE", "/tasks/nope"),
    ]:
        assert_problem(api.request(method, path), 404, "not_found")


def test_a_task_is_invisible_to_another_key(
    emu: EmulatorServer, api: httpx.Client, make_client: Callable[..., httpx.Client]
) -> None:
    task_id = submit(api)["id"]
    other = make_client(emu, key="inf_someone_else")

    assert_problem(other.get(f"/tasks/{task_id}"), 404, "not_found")
    assert_problem(other.post(f"/tasks/{task_id}/cancel"), 404, "not_found")


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "missing API key: send 'Authorization: Bearer <key>'"),
        ({"Authorization": "Basic abc"}, "malformed Authorization header: expected 'Bearer <key>'"),
        ({"Authorization": "Bearer"}, "malformed Authorization header: expected 'Bearer <key>'"),
    ],
)
def test_missing_or_malformed_auth_is_a_401_problem(emu: EmulatorServer, headers: dict[str, str], detail: str) -> None:
    response = httpx.post(f"{emu.base_url}/apps/run", json={"app": APP, "input": {"prompt": "x"}}, headers=headers)

    body = assert_problem(response, 401, "unauthorized")
    assert body == {
        "type": "https://inference.sh/problems/unauthorized",
        "title": "Unauthorized",
        "status": 401,
        "detail": detail,
    }
    assert response.headers["www-authenticate"] == "Bearer"
    assert emu.tasks() == []


def test_a_fixed_key_refuses_others_without_echoing_them(
    make_emu: Callable[..., EmulatorServer], make_client: Callable[..., httpx.Client]
) -> None:
    emu = make_emu(api_key=KEY)
    wrong = make_client(emu, key="inf_wrong_secret_value")

    response = run(wrong)

    assert assert_problem(response, 401, "unauthorized")["detail"] == "invalid API key"
    assert "inf_wrong_secret_value" not in response.text
    assert run(make_client(emu)).status_code == 200


def test_key_ids_are_opaque(api: httpx.Client, emu: EmulatorServer) -> None:
    wait_terminal(api, submit(api)["id"])

    ledger = json.dumps(emu.ledger()) + json.dumps(emu.tasks())

    assert KEY not in ledger
    assert emu.ledger()["charges"][0]["key_id"].startswith("key_")


def test_unknown_app_and_unknown_version_are_404(api: httpx.Client) -> None:
    assert "no app named 'someone/else'" in assert_problem(run(api, app="someone/else"), 404, "not_found")["detail"]
    body = assert_problem(run(api, app="klingai/image-o1@zzzz"), 404, "not_found")
    assert body["detail"] == "app 'klingai/image-o1' has no version 'zzzz'"
    assert_problem(run(api, app="klingai/image-o1@0pbaxv40:upscale"), 404, "not_found")


def test_request_body_problems_are_400s(api: httpx.Client) -> None:
    assert_problem(api.post("/apps/run", content=b"{not json"), 400, "invalid_json")
    assert_problem(api.post("/apps/run", json=[1, 2]), 400, "invalid_json")
    assert_problem(api.post("/apps/run", json={"input": {"prompt": "x"}}), 400, "invalid_request")
    body = assert_problem(run(api, variant="fast"), 400, "invalid_request")
    assert body["detail"] == "unknown key(s): variant"


def test_accepted_run_keys_are_ignored_or_kept(api: httpx.Client) -> None:
    task = submit(
        api,
        "extras",
        setup={},
        function="run",
        metadata={"action": {"key": "k", "on": "done", "params": {}}},
        wait=False,
        stream=False,
        infra="cloud",
        workers=[],
        session="new",
        session_timeout=60,
        run_at=None,
    )

    assert task["session_id"].startswith("sess_")
    assert "metadata" not in task


def test_schema_violations_are_a_422_listing_each_one(api: httpx.Client) -> None:
    response = api.post(
        "/apps/run",
        json={"app": APP, "input": {"negative_prompt": 5, "n": 0, "resolution": "4k", "colour": "red"}},
    )

    body = assert_problem(response, 422, "invalid_input")
    assert body["title"] == "Input does not match the app's schema"
    assert [e["path"] for e in body["errors"]] == ["colour", "n", "negative_prompt", "prompt", "resolution"]
    assert {"path": "prompt", "message": "'prompt' is a required property"} in body["errors"]
    assert {"path": "n", "message": "0 is less than the minimum of 1"} in body["errors"]
    assert body["detail"].startswith("colour: unknown field 'colour'")


def test_image_must_be_an_http_url_and_data_uris_are_refused(api: httpx.Client) -> None:
    data_uri = assert_problem(run(api, input={"image": "data:image/png;base64,AAAA"}), 422, "invalid_input")
    assert data_uri["errors"] == [
        {
            "path": "image",
            "message": "data: URIs are refused by Kling; upload the file first (POST /files) and pass its uri",
        }
    ]
    local = assert_problem(run(api, input={"image": "/tmp/x.png"}), 422, "invalid_input")
    assert local["errors"][0]["message"] == "must be an http(s) URL: an uploaded file's uri or a public URL"
    assert run(api, input={"image": "https://example.com/cat.png"}).status_code == 200


def test_webhooks_must_point_at_loopback(api: httpx.Client) -> None:
    body = assert_problem(run(api, webhook="https://hooks.example.com/x"), 400, "invalid_webhook")
    assert "loopback" in body["detail"]
    assert_problem(run(api, webhook="ftp://127.0.0.1/x"), 400, "invalid_webhook")
    assert run(api, webhook="http://localhost:9/hook?token=abc").json()["data"]["webhook"] == (
        "http://localhost:9/hook?token=abc"
    )


def test_unknown_routes_and_methods(api: httpx.Client) -> None:
    assert_problem(api.get("/nowhere"), 404, "not_found")
    response = api.put("/apps/run")
    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"


def test_get_app_returns_its_id_pinned_version_and_schemas(api: httpx.Client) -> None:
    app = api.get("/apps/klingai/image-o1").json()["data"]

    assert app["id"] == app_id_for(APP)
    assert app["version_id"] == "0pbaxv40"
    assert app["input_schema"]["properties"]["n"]["maximum"] == 9
    assert "image" in app["output_schema"]["properties"]
    assert_problem(api.get("/apps/klingai/other"), 404, "not_found")


def test_estimate_prices_from_the_same_table(api: httpx.Client) -> None:
    app_id = api.get("/apps/klingai/image-o1").json()["data"]["id"]

    one = api.post(f"/store/apps/{app_id}/estimate", json={"input": {"prompt": "x"}}).json()["data"]
    nine = api.post("/store/apps/klingai/image-o1/estimate", json={"input": {"prompt": "x", "n": 9}}).json()["data"]

    assert one == {"confidence": "exact", "microcents": 2_800_000, "pricing_description": "$0.028 per image x n"}
    assert nine["microcents"] == 25_200_000
    assert_problem(api.post(f"/store/apps/{app_id}/estimate", json={"input": {"n": 1}}), 422, "invalid_input")
    assert_problem(api.post("/store/apps/app_nope/estimate", json={"input": {"prompt": "x"}}), 404, "not_found")


def test_run_responses_carry_rate_limit_headers(api: httpx.Client) -> None:
    headers = run(api).headers

    assert int(headers["x-ratelimit-limit"]) >= int(headers["x-ratelimit-remaining"]) > 0
    assert int(headers["x-ratelimit-reset"]) >= 0
