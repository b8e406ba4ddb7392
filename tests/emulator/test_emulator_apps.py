"""Every bundled app over real HTTP: its document, runs, refusals, outputs by its output schema,
billing by its unit in the one ledger, estimates, and the task listing across apps."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from kling_pipeline.core.schemas import known_apps, load_app
from kling_pipeline.emulator import EmulatorServer
from kling_pipeline.emulator.state import app_id_for

from .helpers import assert_problem, wait_terminal

VIDEO, IMAGES = "klingai/video-o1", "google/gemini-2-5-flash-image"
SPEECH, SOUND = "elevenlabs/tts", "elevenlabs/sound-effects"
SENTENCE = "Welcome to the emulator; this sentence is sixty chars long!!"


def start(api: httpx.Client, app: str, value: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/apps/run", json={"app": app, "input": value})
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()["data"]
    return task


def finish(api: httpx.Client, app: str, value: dict[str, Any]) -> dict[str, Any]:
    task = wait_terminal(api, start(api, app, value)["id"])
    assert task["status"] == 10, task["error"]
    return task


def test_every_bundled_app_is_served_image_o1_first(emu: EmulatorServer) -> None:
    listed = httpx.get(f"{emu.base_url}/_emulator/apps").json()["data"]

    assert emu.apps()[0] == "klingai/image-o1"
    assert sorted(emu.apps()) == known_apps()
    assert {VIDEO, IMAGES, SPEECH, SOUND} <= set(emu.apps())
    assert [a["app"] for a in listed] == emu.apps()
    assert all(a["id"] == app_id_for(a["app"]) and a["versions"] == [a["version_id"]] for a in listed)


@pytest.mark.parametrize("app", [VIDEO, IMAGES, SPEECH, SOUND])
def test_the_app_document_serves_the_bundled_schemas_and_price(api: httpx.Client, app: str) -> None:
    spec = load_app(app)
    namespace, name = app.split("/")

    document = api.get(f"/apps/{app}").json()["data"]

    assert (document["id"], document["namespace"], document["name"]) == (app_id_for(app), namespace, name)
    assert document["version_id"] == spec.pinned_version and document["versions"] == [{"id": spec.pinned_version}]
    assert document["input_schema"] == json.loads((spec.directory / "input.schema.json").read_text())
    assert document["output_schema"] == document["version"]["output_schema"] == spec.output_schema
    assert document["pricing"]["unit"] == spec.pricing.unit
    assert document["pricing"]["microcents_per_unit"] == spec.pricing.microcents_per_unit


def test_price_tables_in_the_documents(api: httpx.Client) -> None:
    video, images, speech, sound = (api.get(f"/apps/{a}").json()["data"]["pricing"]
                                    for a in (VIDEO, IMAGES, SPEECH, SOUND))

    assert video["quantity_field"] == "duration" and video["confidence"] == "exact"
    assert video["rates"][0] == {"when": {"mode": "std", "reference_video": None}, "microcents_per_unit": 8_400_000}
    assert (images["confidence"], images["min_microcents_per_unit"], images["max_microcents_per_unit"]) == (
        "range", 3_870_000, 12_062_000)
    assert (speech["unit"], speech["quantity_field"], speech["quantity_of"]) == ("character", "text", "length")
    assert speech["rates"] == [{"when": {"model": ["eleven_turbo_v2_5", "eleven_flash_v2_5"]},
                                "microcents_per_unit": 8_000}]
    assert (sound["unit"], sound["quantity_field"], sound["microcents_per_unit"]) == ("run", None, 13_000_000)


@pytest.mark.parametrize(
    ("app", "value"),
    [
        (VIDEO, {"prompt": "a lake at dawn", "duration": 7, "mode": "std", "aspect_ratio": "9:16"}),
        (IMAGES, {"prompt": "three owls", "num_images": 3, "aspect_ratio": "16:9"}),
        (SPEECH, {"text": SENTENCE}),
        (SOUND, {"text": "rain on a tin roof", "duration_seconds": 2.5}),
    ],
)
def test_a_run_completes_with_an_output_valid_for_the_apps_output_schema(
    api: httpx.Client, app: str, value: dict[str, Any]
) -> None:
    task = finish(api, app, value)

    assert task["app"] == app and task["app_id"] == app_id_for(app)
    assert task["version_id"] == load_app(app).pinned_version
    Draft202012Validator(dict(load_app(app).output_schema)).validate(task["output"])
    assert [e["status"] for e in task["events"]] == [1, 2, 7, 9, 10]


def test_outputs_usage_and_charges_by_each_apps_unit(api: httpx.Client, emu: EmulatorServer) -> None:
    video = finish(api, VIDEO, {"prompt": "a lake at dawn", "duration": 7, "mode": "std"})
    images = finish(api, IMAGES, {"prompt": "three owls", "num_images": 3})
    speech = finish(api, SPEECH, {"text": SENTENCE})
    sound = finish(api, SOUND, {"text": "rain", "duration_seconds": 2.5})

    assert len(SENTENCE) == 60
    assert video["usage_events"] == [{"type": "video", "model": "kling-video-o1", "quantity": 7, "unit": "second"}]
    assert images["usage_events"] == [{"type": "image", "model": "gemini-2.5-flash-image", "quantity": 3,
                                       "unit": "image"}]
    assert speech["usage_events"] == [{"type": "text", "model": "eleven_multilingual_v2", "quantity": 60,
                                       "unit": "character"}]
    assert sound["usage_events"] == [{"type": "audio", "model": "elevenlabs-sound-effects", "quantity": 1,
                                      "unit": "run"}]
    assert video["output"]["output_meta"] == {"outputs": [{"type": "video", "seconds": 7, "extra": {}}]}
    assert images["output"]["output_meta"] == {"outputs": [{"type": "image", "count": 3, "extra": {}}]}
    assert speech["output"]["output_meta"] == {"outputs": [{"type": "audio", "seconds": 4, "extra": {}}]}
    assert sound["output"]["output_meta"] == {"outputs": [{"type": "audio", "seconds": 2.5, "extra": {}}]}
    assert images["output"]["description"] == "Here are 3 image(s) for: three owls"

    ledger = emu.ledger()
    billed = [{k: c[k] for k in c if k not in ("input", "input_sha256", "key_id", "charged_at")}
              for c in ledger["charges"]]
    assert billed == [
        {"task_id": video["id"], "app": VIDEO, "seconds": 7, "microcents": 58_800_000},  # 7 s x $0.084 (std)
        {"task_id": images["id"], "app": IMAGES, "images": 3, "microcents": 11_700_000},  # 3 x $0.039
        {"task_id": speech["id"], "app": SPEECH, "characters": 60, "microcents": 1_020_000},  # 60 x $0.00017
        {"task_id": sound["id"], "app": SOUND, "runs": 1, "microcents": 13_000_000},  # $0.13 a run
    ]
    assert ledger["total_microcents"] == 84_520_000 and ledger["total_usd"] == "0.8452"
    assert ledger["by_app"] == {VIDEO: 58_800_000, IMAGES: 11_700_000, SPEECH: 1_020_000, SOUND: 13_000_000}


def test_prices_follow_the_rates_and_the_schema_defaults(api: httpx.Client, emu: EmulatorServer) -> None:
    finish(api, VIDEO, {"prompt": "defaults: pro, 5 s"})
    finish(api, VIDEO, {"prompt": "with a video input", "reference_video": "https://example.com/ref.mp4"})
    finish(api, SPEECH, {"text": SENTENCE, "model": "eleven_flash_v2_5"})

    charges = [(c["app"], c["microcents"]) for c in emu.ledger()["charges"]]
    assert charges == [(VIDEO, 56_000_000), (VIDEO, 84_000_000), (SPEECH, 480_000)]


@pytest.mark.parametrize(
    ("app", "value", "path", "message"),
    [
        (VIDEO, {"prompt": "x", "duration": 11}, "duration", "11 is greater than the maximum of 10"),
        (VIDEO, {"prompt": "x", "mode": "ultra"}, "mode", "'ultra' is not one of ['std', 'pro']"),
        (VIDEO, {"duration": 5}, "prompt", "'prompt' is a required property"),
        (IMAGES, {"prompt": "x", "num_images": 5}, "num_images", "5 is greater than the maximum of 4"),
        (SPEECH, {"text": "x", "voice": "nobody"}, "voice", "'nobody' is not one of"),
        (SOUND, {"text": "x", "duration_seconds": 30}, "duration_seconds", "30 is not valid under any of the given"),
    ],
)
def test_an_input_the_apps_schema_refuses_is_a_422_naming_the_field(
    api: httpx.Client, emu: EmulatorServer, app: str, value: dict[str, Any], path: str, message: str
) -> None:
    body = assert_problem(api.post("/apps/run", json={"app": app, "input": value}), 422, "invalid_input")

    assert [e["path"] for e in body["errors"]] == [path]
    assert body["errors"][0]["message"].startswith(message)
    assert emu.tasks() == []


def test_file_references_in_lists_are_checked_item_by_item(api: httpx.Client) -> None:
    value = {"prompt": "x", "reference_images": ["https://example.com/a.png", "data:image/png;base64,AAAA"]}

    body = assert_problem(api.post("/apps/run", json={"app": VIDEO, "input": value}), 422, "invalid_input")

    refused = "data: URIs are refused by Kling; upload the file first (POST /files) and pass its uri"
    assert body["errors"] == [{"path": "reference_images[1]", "message": refused}]


def test_unknown_apps_and_versions_are_404(api: httpx.Client) -> None:
    body = assert_problem(api.post("/apps/run", json={"app": "elevenlabs/nope", "input": {}}), 404, "not_found")
    assert body["detail"] == "no app named 'elevenlabs/nope'"
    body = assert_problem(api.post("/apps/run", json={"app": f"{VIDEO}@0pbaxv40", "input": {"prompt": "x"}}), 404,
                          "not_found")
    assert body["detail"] == "app 'klingai/video-o1' has no version '0pbaxv40'"
    assert finish(api, f"{VIDEO}@ef28809a", {"prompt": "pinned"})["version_id"] == "ef28809a"
    assert_problem(api.get("/apps/elevenlabs/nope"), 404, "not_found")


@pytest.mark.parametrize(
    ("app", "value", "answer"),
    [
        (VIDEO, {"prompt": "x", "duration": 10, "mode": "std"},
         {"confidence": "exact", "microcents": 84_000_000, "pricing_description": "$0.084 per second x duration"}),
        (IMAGES, {"prompt": "x", "num_images": 2},
         {"confidence": "range", "min": 7_740_000, "max": 24_124_000,
          "pricing_description": "$0.0387 to $0.12062 (typically $0.039) per image x num_images"}),
        (SPEECH, {"text": "x" * 1000},
         {"confidence": "exact", "microcents": 17_000_000,
          "pricing_description": "$0.00017 per character x length of text"}),
        (SOUND, {"text": "x"},
         {"confidence": "exact", "microcents": 13_000_000, "pricing_description": "$0.13 per run"}),
    ],
)
def test_estimates_by_id_and_by_name(
    api: httpx.Client, app: str, value: dict[str, Any], answer: dict[str, Any]
) -> None:
    by_id = api.post(f"/store/apps/{app_id_for(app)}/estimate", json={"input": value})
    by_name = api.post(f"/store/apps/{app}/estimate", json={"input": value})

    assert by_id.json()["data"] == by_name.json()["data"] == answer


def test_an_estimate_of_an_invalid_input_is_a_422(api: httpx.Client) -> None:
    assert_problem(api.post(f"/store/apps/{SOUND}/estimate", json={"input": {"duration_seconds": 1}}), 422,
                   "invalid_input")


def test_the_listing_holds_every_apps_tasks_and_filters_by_app(api: httpx.Client) -> None:
    tasks = {app: finish(api, app, value)["id"] for app, value in
             [(VIDEO, {"prompt": "v"}), (SOUND, {"text": "s"}), ("klingai/image-o1", {"prompt": "i"})]}

    def listed(filters: list[dict[str, Any]]) -> list[str]:
        return [t["id"] for t in api.post("/tasks/list", json={"filters": filters}).json()["data"]["items"]]

    assert sorted(listed([])) == sorted(tasks.values())
    assert listed([{"field": "app", "operator": "eq", "value": VIDEO}]) == [tasks[VIDEO]]
    assert listed([{"field": "app_id", "operator": "eq", "value": app_id_for(SOUND)}]) == [tasks[SOUND]]


def test_a_config_can_serve_image_o1_alone(
    make_emu: Callable[..., EmulatorServer], make_client: Callable[..., httpx.Client]
) -> None:
    emu = make_emu(apps=())
    api = make_client(emu)

    assert emu.apps() == ["klingai/image-o1"]
    assert_problem(api.post("/apps/run", json={"app": VIDEO, "input": {"prompt": "x"}}), 404, "not_found")
