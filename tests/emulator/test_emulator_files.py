"""Uploads (``POST /files`` + ``PUT`` to the signed URL), downloads, and files used as inputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from kling_pipeline.emulator import EmulatorServer
from kling_pipeline.emulator.images import encode_png

from .helpers import assert_problem, submit, wait_terminal


def reference_png(width: int = 400, height: int = 320) -> bytes:
    return encode_png(width, height, [bytes([y % 256, 60, 180]) * width for y in range(height)])


def reserve(api: httpx.Client, size: int | None, **fields: Any) -> dict[str, Any]:
    body = {"uri": "", "filename": "ref.png", "content_type": "image/png", "path": None, "size": size}
    body.update(fields)
    response = api.post("/files", json={"files": [body]})
    assert response.status_code == 200, response.text
    entry: dict[str, Any] = response.json()["data"][0]
    return entry


def upload(api: httpx.Client, data: bytes, content_type: str = "image/png") -> dict[str, Any]:
    entry = reserve(api, len(data), content_type=content_type)
    put = httpx.put(entry["upload_url"], content=data, headers={"Content-Type": content_type})
    assert put.status_code == 200, put.text
    return entry


def test_upload_then_download_returns_the_same_bytes(api: httpx.Client, emu: EmulatorServer) -> None:
    data = reference_png()

    entry = upload(api, data)

    assert entry["uri"].startswith(emu.base_url + "/files/")
    assert {"id", "uri", "upload_url", "filename", "content_type", "size"} <= set(entry)
    download = httpx.get(entry["uri"])
    assert download.content == data
    assert download.headers["content-type"] == "image/png"
    assert download.headers["content-length"] == str(len(data))


def test_a_reserved_file_is_not_there_until_its_bytes_are_put(api: httpx.Client) -> None:
    entry = reserve(api, 10)

    assert_problem(httpx.get(entry["uri"]), 404, "not_found")
    body = assert_problem(
        api.post("/apps/run", json={"app": "klingai/image-o1", "input": {"prompt": "x", "image": entry["uri"]}}),
        422,
        "invalid_input",
    )
    assert body["errors"][0]["path"] == "image"
    assert "no uploaded file at" in body["errors"][0]["message"]


def test_upload_url_needs_its_token_and_the_declared_size(api: httpx.Client) -> None:
    entry = reserve(api, 5)
    wrong_token = entry["upload_url"].split("?")[0] + "?token=guess"

    assert_problem(httpx.put(wrong_token, content=b"12345"), 403, "access_denied")
    body = assert_problem(httpx.put(entry["upload_url"], content=b"1234"), 400, "invalid_request")
    assert body["detail"] == "declared 5 bytes at POST /files, received 4"


def test_uploads_are_bounded(make_emu: Callable[..., EmulatorServer], make_client: Callable[..., httpx.Client]) -> None:
    emu = make_emu(max_upload_bytes=1000)
    api = make_client(emu)

    assert_problem(api.post("/files", json={"files": [{"size": 1001}]}), 413, "payload_too_large")
    entry = reserve(api, None)
    assert_problem(httpx.put(entry["upload_url"], content=b"x" * 1001), 413, "payload_too_large")


def test_bad_upload_requests_are_400(api: httpx.Client) -> None:
    assert_problem(api.post("/files", json={"files": []}), 400, "invalid_request")
    assert_problem(api.post("/files", json={"files": [{"size": "big"}]}), 400, "invalid_request")
    assert_problem(api.post("/files", json={}), 400, "invalid_request")


def test_uploaded_reference_image_is_accepted_as_input(api: httpx.Client, emu: EmulatorServer) -> None:
    entry = upload(api, reference_png())

    task = wait_terminal(api, submit(api, "image to image", input={"image": entry["uri"]})["id"])

    assert task["status"] == 10
    assert task["input"]["image"] == entry["uri"]
    assert emu.ledger()["total_microcents"] == 2_800_000


def test_a_reference_image_kling_would_refuse_fails_the_task_unbilled(api: httpx.Client, emu: EmulatorServer) -> None:
    tiny = upload(api, reference_png(100, 100))
    not_an_image = upload(api, b"hello, not a picture", content_type="image/png")

    small = wait_terminal(api, submit(api, "tiny", input={"image": tiny["uri"]})["id"])
    text = wait_terminal(api, submit(api, "text", input={"image": not_an_image["uri"]})["id"])

    assert small["status"] == 11
    assert small["error"] == (
        "Kling API error (code 1201): invalid reference image: "
        "image: image is 100x100 px; width and height must be at least 300x300"
    )
    assert text["status"] == 11 and "must be a PNG or JPEG" in text["error"]
    assert emu.ledger()["charges"] == []


def test_head_and_download_of_an_output_file(api: httpx.Client) -> None:
    uri = wait_terminal(api, submit(api)["id"])["output"]["image"]["uri"]

    head = httpx.head(uri)
    body = httpx.get(uri)

    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(body.content))
    assert body.headers["content-type"] == "image/png"
    assert_problem(httpx.get(uri.rsplit("/", 1)[0] + "/nope"), 404, "not_found")


def test_an_output_of_the_emulator_can_be_the_next_reference_image(api: httpx.Client, emu: EmulatorServer) -> None:
    first = wait_terminal(api, submit(api, "a chair")["id"])

    second = wait_terminal(
        api, submit(api, "the chair, in oil", input={"image": first["output"]["image"]["uri"]})["id"]
    )

    assert second["status"] == 10  # drawn at 1/8 scale, yet a valid 1360x768 output for Kling's checks
    assert emu.ledger()["total_microcents"] == 2 * 2_800_000


def test_odd_names_and_types_from_an_upload_cannot_break_the_download_headers(api: httpx.Client) -> None:
    entry = reserve(api, 3, filename='évil"\r\nx: y.png', content_type="text/plain")
    put = httpx.put(entry["upload_url"], content=b"abc", headers={"Content-Type": "image/png\tfoo"})
    assert put.status_code == 200

    download = httpx.get(entry["uri"])

    assert download.status_code == 200 and download.content == b"abc"
    assert download.headers["content-type"] == "application/octet-stream"
    assert download.headers["content-disposition"] == 'inline; filename="_vil___x__y.png"'
