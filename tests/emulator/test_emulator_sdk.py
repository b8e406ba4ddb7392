"""Conformance: the official SDK (inferencesh 0.36.0), unchanged, against the emulator."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from inferencesh import AsyncInference, Inference, TaskStatus
from inferencesh.models.errors import APIError

from kling_pipeline.emulator import EmulatorServer, Faults
from kling_pipeline.emulator.images import encode_png

from .helpers import APP, KEY, PINNED, decode_png, wait_until


@pytest.fixture
def sdk(emu: EmulatorServer) -> Inference:
    return Inference(api_key=KEY, base_url=emu.base_url)


def test_run_waits_and_returns_the_completed_task_with_a_downloadable_png(emu: EmulatorServer, sdk: Inference) -> None:
    result = sdk.run({"app": PINNED, "input": {"prompt": "a lighthouse at dusk", "aspect_ratio": "1:1"}})

    assert isinstance(result, dict)
    assert result["status"] == TaskStatus.COMPLETED
    image = result["output"]["image"]
    assert image["content_type"] == "image/png"
    assert result["output"]["output_meta"] == {"outputs": [{"type": "image", "count": 1, "extra": {}}]}
    png = httpx.get(image["uri"]).content
    assert decode_png(png)[:2] == (128, 128)  # 1k 1:1 is 1024x1024, divided by the image scale 8
    assert [c["task_id"] for c in emu.ledger()["charges"]] == [result["id"]]


def test_run_stream_yields_the_status_changes_and_ends_with_the_output(
    make_emu: Callable[..., EmulatorServer],
) -> None:
    emu = make_emu(latency=0.4, progress_steps=4)
    sdk = Inference(api_key=KEY, base_url=emu.base_url)

    stream = sdk.run({"app": APP, "input": {"prompt": "streamed"}}, stream=True)
    updates = list(stream)

    statuses = [u["status"] for u in updates]
    assert statuses[-1] == TaskStatus.COMPLETED
    assert TaskStatus.RUNNING in statuses and TaskStatus.UPLOADING in statuses
    assert statuses == sorted(statuses)  # status never goes back
    # the SDK strips 'progress' from updates; the raw stream carries it (see the API tests)
    assert len([s for s in statuses if s == TaskStatus.RUNNING]) >= 2
    assert updates[-1]["output"]["image"]["uri"].startswith(emu.base_url + "/files/")
    assert stream.result is not None and stream.result["id"] == updates[-1]["id"]


def test_run_without_waiting_then_get_task_until_done(sdk: Inference) -> None:
    created = sdk.run({"app": APP, "input": {"prompt": "no wait"}}, wait=False)

    assert isinstance(created, dict)
    assert created["status"] in (TaskStatus.RECEIVED, TaskStatus.QUEUED)
    assert created["input"] == {"prompt": "no wait"}
    done = wait_until(
        lambda: (t := sdk.get_task(created["id"]).data)["status"] == TaskStatus.COMPLETED and t, what="completion"
    )
    assert done["output"]["image"]["content_type"] == "image/png"


def test_local_png_in_the_input_is_uploaded_and_used(emu: EmulatorServer, sdk: Inference, tmp_path: Path) -> None:
    reference = tmp_path / "reference.png"  # Kling wants at least 300x300 px
    reference.write_bytes(encode_png(400, 320, [bytes([y % 256, 40, 200]) * 400 for y in range(320)]))

    result = sdk.run({"app": APP, "input": {"prompt": "restyle this", "image": str(reference)}})

    uri = result["input"]["image"]
    assert uri.startswith(emu.base_url + "/files/")
    assert httpx.get(uri).content == reference.read_bytes()
    assert result["status"] == TaskStatus.COMPLETED
    assert decode_png(httpx.get(result["output"]["image"]["uri"]).content)[:2] == (170, 96)


def test_cancel_ends_the_task_cancelled_and_unbilled(make_emu: Callable[..., EmulatorServer]) -> None:
    emu = make_emu(latency=30.0)
    sdk = Inference(api_key=KEY, base_url=emu.base_url)
    created = sdk.run({"app": APP, "input": {"prompt": "too slow"}}, wait=False)
    assert isinstance(created, dict)

    sdk.cancel(created["id"])

    assert sdk.get_task(created["id"]).data["status"] == TaskStatus.CANCELLED
    assert emu.ledger()["charges"] == []
    with pytest.raises(APIError) as again:
        sdk.cancel(created["id"])
    assert again.value.status_code == 409


def test_async_client_runs_several_tasks_concurrently(emu: EmulatorServer) -> None:
    async def main() -> list[dict[str, object]]:
        client = AsyncInference(api_key=KEY, base_url=emu.base_url)
        jobs = [client.run({"app": APP, "input": {"prompt": f"async {i}", "n": 2}}) for i in range(3)]
        return list(await asyncio.gather(*jobs))

    results = asyncio.run(main())

    assert {r["status"] for r in results} == {TaskStatus.COMPLETED}
    ledger = emu.ledger()
    assert ledger["total_microcents"] == 3 * 2 * 2_800_000
    assert sorted(c["task_id"] for c in ledger["charges"]) == sorted(str(r["id"]) for r in results)


def test_schema_violation_reaches_the_sdk_as_a_422_with_every_problem(sdk: Inference) -> None:
    with pytest.raises(APIError) as caught:
        sdk.run({"app": APP, "input": {"prompt": "x", "n": 10, "aspect_ratio": "5:4", "seed": 3}}, wait=False)

    error = caught.value
    assert error.status_code == 422
    assert error.response_body is not None
    body = httpx.Response(422, content=error.response_body).json()
    assert body["type"] == "https://inference.sh/problems/invalid_input"
    assert body["title"] == "Input does not match the app's schema"
    assert body["status"] == 422
    assert [e["path"] for e in body["errors"]] == ["aspect_ratio", "n", "seed"]
    assert error.message == body["detail"]
    assert "n: 10 is greater than the maximum of 9" in body["detail"]


def test_bad_key_reaches_the_sdk_as_a_401_problem(make_emu: Callable[..., EmulatorServer]) -> None:
    emu = make_emu(api_key="inf_the_right_key")
    sdk = Inference(api_key="inf_a_wrong_key", base_url=emu.base_url)

    with pytest.raises(APIError) as caught:
        sdk.run({"app": APP, "input": {"prompt": "x"}}, wait=False)

    assert caught.value.status_code == 401
    body = httpx.Response(401, content=caught.value.response_body or "").json()
    assert body == {
        "type": "https://inference.sh/problems/unauthorized",
        "title": "Unauthorized",
        "status": 401,
        "detail": "invalid API key",
    }
    assert "inf_a_wrong_key" not in (caught.value.response_body or "")
    assert (
        Inference(api_key="inf_the_right_key", base_url=emu.base_url).run({"app": APP, "input": {"prompt": "x"}})[
            "status"
        ]
        == TaskStatus.COMPLETED
    )


def test_sdk_survives_a_cut_stream_by_reconnecting(make_emu: Callable[..., EmulatorServer]) -> None:
    emu = make_emu(latency=0.2, faults=Faults(stream_cut_rate=1.0))
    sdk = Inference(api_key=KEY, base_url=emu.base_url)

    result = sdk.run({"app": APP, "input": {"prompt": "cut"}})

    assert result["status"] == TaskStatus.COMPLETED
    assert result["output"]["image"]["content_type"] == "image/png"
