"""Changing an app while the emulator runs (``POST /_emulator/apps/{namespace}/{name}`` and
``EmulatorServer.edit_app``): clients see the new schema, version and price at once."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

from kling_pipeline.core.schemas import load_app
from kling_pipeline.emulator import EmulatorServer

from .helpers import assert_problem, wait_terminal

VIDEO, SPEECH = "klingai/video-o1", "elevenlabs/tts"


def edit(emu: EmulatorServer, app: str, change: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{emu.base_url}/_emulator/apps/{app}", json=change)


def run(api: httpx.Client, app: str, value: dict[str, Any]) -> httpx.Response:
    return api.post("/apps/run", json={"app": app, "input": value})


def longer_videos() -> dict[str, Any]:
    schema = copy.deepcopy(dict(load_app(VIDEO).input_schema))
    schema["properties"]["duration"]["maximum"] = 15
    return schema


def test_a_new_version_changes_schema_and_price_and_keeps_the_old_one_runnable(
    api: httpx.Client, emu: EmulatorServer
) -> None:
    change = {"version": "v2", "input_schema": longer_videos(), "pricing": {"usd_per_unit": "0.2", "rates": None}}

    answer = edit(emu, VIDEO, change)

    assert answer.status_code == 200, answer.text
    document = api.get(f"/apps/{VIDEO}").json()["data"]
    assert document == answer.json()["data"]
    assert document["version_id"] == "v2" and document["versions"] == [{"id": "ef28809a"}, {"id": "v2"}]
    assert document["input_schema"]["properties"]["duration"]["maximum"] == 15
    assert (document["pricing"]["microcents_per_unit"], "rates" in document["pricing"]) == (20_000_000, False)

    new = wait_terminal(api, run(api, VIDEO, {"prompt": "twelve seconds", "duration": 12}).json()["data"]["id"])
    old = wait_terminal(api, run(api, f"{VIDEO}@ef28809a", {"prompt": "five", "duration": 5}).json()["data"]["id"])
    refused = run(api, f"{VIDEO}@ef28809a", {"prompt": "twelve", "duration": 12})

    assert (new["version_id"], old["version_id"]) == ("v2", "ef28809a")
    assert assert_problem(refused, 422, "invalid_input")["errors"][0]["path"] == "duration"
    assert [(c["seconds"], c["microcents"]) for c in emu.ledger()["charges"]] == [(12, 240_000_000), (5, 56_000_000)]
    estimate = api.post(f"/store/apps/{VIDEO}/estimate", json={"input": {"prompt": "x", "duration": 15}})
    assert estimate.json()["data"]["microcents"] == 300_000_000


def test_without_a_version_the_current_one_changes_in_place(api: httpx.Client, emu: EmulatorServer) -> None:
    answer = edit(emu, SPEECH, {"title": "TTS, repriced", "pricing": {"confidence": "unknown", "note": "ask"}})

    document = answer.json()["data"]
    assert document["title"] == "TTS, repriced" and document["versions"] == [{"id": "0b666f9a"}]
    assert document["pricing"]["confidence"] == "unknown"
    estimate = api.post(f"/store/apps/{SPEECH}/estimate", json={"input": {"text": "hello"}}).json()["data"]
    assert estimate == {"confidence": "unknown", "pricing_description": "price unknown: ask"}


def test_the_python_method_does_the_same(api: httpx.Client, emu: EmulatorServer) -> None:
    document = emu.edit_app(SPEECH, pricing={"usd_per_unit": "0.0003", "rates": None})

    assert document["pricing"]["microcents_per_unit"] == 30_000
    task = wait_terminal(api, run(api, SPEECH, {"text": "x" * 10, "model": "eleven_flash_v2_5"}).json()["data"]["id"])
    assert task["status"] == 10
    assert emu.ledger()["charges"][0]["microcents"] == 300_000
    with pytest.raises(LookupError):
        emu.edit_app("nobody/nothing", title="x")
    with pytest.raises(ValueError, match="cannot edit colour"):
        emu.edit_app(SPEECH, colour="red")


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"colour": "red"}, "cannot edit colour (editable: emulator, input_schema, output_schema, pricing, title, "
                            "version)"),
        ({"input_schema": {"type": 5}}, "input_schema is not a valid JSON Schema: 5 is not valid under any of the "
                                        "given schemas"),
        ({"input_schema": "not an object"}, "input_schema must be a JSON object"),
        ({"pricing": {"confidence": "maybe"}}, "confidence must be one of exact, range, unknown, got 'maybe'"),
        ({"pricing": {"confidence": "range"}}, "a range price needs both min and max (USD per unit)"),
        ({"output_schema": {"type": "object", "properties": {}}},
         "emulator.outputs names fields the output schema lacks: output_meta, video"),
        ({"version": ""}, "version must be a non-empty string without '@'"),
    ],
)
def test_a_malformed_change_is_a_400_and_changes_nothing(
    api: httpx.Client, emu: EmulatorServer, change: dict[str, Any], detail: str
) -> None:
    before = api.get(f"/apps/{VIDEO}").json()["data"]

    body = assert_problem(edit(emu, VIDEO, change), 400, "invalid_request")

    assert body["detail"] == detail
    assert api.get(f"/apps/{VIDEO}").json()["data"] == before


def test_an_unknown_app_cannot_be_edited(emu: EmulatorServer) -> None:
    assert_problem(edit(emu, "nobody/nothing", {"title": "x"}), 404, "not_found")
