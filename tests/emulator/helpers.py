"""Helpers for the emulator tests: polling with a deadline, a tiny PNG decoder, stream reading."""

from __future__ import annotations

import json
import struct
import time
import zlib
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

KEY = "inf_emulator_test_key_0123456789"
APP = "klingai/image-o1"
PINNED = "klingai/image-o1@0pbaxv40"
PROBLEM_TYPE = "application/problem+json"

T = TypeVar("T")


def wait_until(probe: Callable[[], T | None], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll ``probe`` until it returns something truthy (not a timing assertion: a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def run(client: httpx.Client, prompt: str = "a red teapot", **fields: Any) -> httpx.Response:
    body: dict[str, Any] = {"app": fields.pop("app", APP), "input": {"prompt": prompt, **fields.pop("input", {})}}
    body.update(fields)
    return client.post("/apps/run", json=body)


def submit(client: httpx.Client, prompt: str = "a red teapot", **fields: Any) -> dict[str, Any]:
    response = run(client, prompt, **fields)
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()["data"]
    return task


def get_task(client: httpx.Client, task_id: str) -> dict[str, Any]:
    response = client.get(f"/tasks/{task_id}")
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()["data"]
    return task


def wait_terminal(client: httpx.Client, task_id: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        task = get_task(client, task_id)
        return task if task["status"] >= 10 else None

    return wait_until(probe, what=f"task {task_id} to end")


def read_stream(client: httpx.Client, task_id: str) -> list[dict[str, Any]]:
    with client.stream("GET", f"/tasks/{task_id}/stream") as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        return [json.loads(line) for line in response.iter_lines() if line.strip()]


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_TYPE
    body: dict[str, Any] = response.json()
    assert body["type"].endswith("/" + code)
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, raw RGB rows) of an 8-bit RGB, non-interlaced PNG; checks every CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, f"bad CRC in {kind!r}"
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + length
    assert header is not None, "no IHDR"
    width, height, depth, colour, _, _, interlace = header
    assert (depth, colour, interlace) == (8, 2, 0), "expected 8-bit RGB, not interlaced"
    raw = zlib.decompress(idat)
    stride = 3 * width
    assert len(raw) == height * (stride + 1)
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - 3] if x >= 3 else 0
            up = previous[x]
            up_left = previous[x - 3] if x >= 3 else 0
            if kind == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else up_left
                line[x] = (line[x] + pred) & 0xFF
            else:
                assert kind == 0, f"unknown filter {kind}"
        rows.append(bytes(line))
        previous = line
    return width, height, rows
