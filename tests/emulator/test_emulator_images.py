"""Output PNGs: valid files, sized by the contract's table and the image scale, deterministic."""

from __future__ import annotations

import struct
from collections.abc import Callable

import httpx
import pytest

from kling_pipeline.core.schemas import load_app
from kling_pipeline.emulator import EmulatorServer
from kling_pipeline.emulator.images import encode_png, image_problem, jpeg_size, png_size

from .helpers import decode_png, submit, wait_terminal

PIXELS = load_app("klingai/image-o1").output_pixels


def output_png(api: httpx.Client, prompt: str, **fields: object) -> tuple[dict[str, object], bytes]:
    task = wait_terminal(api, submit(api, prompt, input=fields)["id"])
    image = task["output"]["image"]
    return image, httpx.get(image["uri"]).content


@pytest.mark.parametrize(
    ("resolution", "aspect_ratio", "scale"),
    [("1k", "16:9", 8), ("1k", "21:9", 8), ("2k", "9:16", 8), ("2k", "3:2", 16), ("1k", "1:1", 1)],
)
def test_png_size_is_the_contract_size_divided_by_the_scale(
    make_emu: Callable[..., EmulatorServer],
    make_client: Callable[..., httpx.Client],
    resolution: str,
    aspect_ratio: str,
    scale: int,
) -> None:
    api = make_client(make_emu(image_scale=scale))
    full_width, full_height = PIXELS[resolution][aspect_ratio]

    image, png = output_png(api, "a fox", resolution=resolution, aspect_ratio=aspect_ratio)

    width, height, rows = decode_png(png)
    assert (width, height) == (round(full_width / scale), round(full_height / scale))
    assert (image["width"], image["height"]) == (width, height)
    assert len(set(rows)) > 1  # not a flat colour


def test_defaults_from_the_schema_give_1k_16_9(api: httpx.Client) -> None:
    _, png = output_png(api, "defaults")

    assert png_size(png) == (170, 96)


def test_different_prompts_give_different_pictures(api: httpx.Client) -> None:
    _, fox = output_png(api, "a fox")
    _, owl = output_png(api, "an owl")

    fox_rows, owl_rows = decode_png(fox)[2], decode_png(owl)[2]
    assert fox_rows[0][:3] != owl_rows[0][:3] or fox_rows != owl_rows
    assert fox_rows != owl_rows


def test_same_input_and_sample_index_give_identical_bytes(
    make_emu: Callable[..., EmulatorServer], make_client: Callable[..., httpx.Client]
) -> None:
    first, second = make_client(make_emu()), make_client(make_emu())

    _, a0 = output_png(first, "repeatable", n=2)
    _, b0 = output_png(second, "repeatable", n=2)
    _, a1 = output_png(first, "repeatable", n=2)  # second submission of that input: sample index 1

    assert a0 == b0
    assert a1 != a0
    assert decode_png(a1)[:2] == decode_png(a0)[:2]


def test_encoder_round_trips_pixels_with_every_row_checked() -> None:
    rows = [bytes((x * 7 + y) % 256 for x in range(3 * 5)) for y in range(4)]

    width, height, decoded = decode_png(encode_png(5, 4, rows, {"Comment": "hi"}))

    assert (width, height, decoded) == (5, 4, rows)
    with pytest.raises(ValueError, match="row 0 has 2 bytes"):
        encode_png(5, 1, [b"ab"])
    with pytest.raises(ValueError, match="got 1 rows, expected 2"):
        encode_png(1, 2, [b"abc"])


def test_reference_image_checks_follow_the_schema_limits() -> None:
    limits = {
        "max_bytes": 10_000,
        "min_width": 300,
        "min_height": 300,
        "min_aspect_ratio": 0.4,
        "max_aspect_ratio": 2.5,
    }
    wide = encode_png(1000, 300, [b"\x10" * 3000] * 300)
    jpeg = b"\xff\xd8" + b"\xff\xe0" + struct.pack(">H", 4) + b"\x00\x00"
    jpeg += b"\xff\xc0" + struct.pack(">HBHH", 11, 8, 400, 500) + b"\x03\x01\x11\x00"

    assert jpeg_size(jpeg) == (500, 400)
    assert image_problem(jpeg, limits) is None
    assert image_problem(wide, limits) == "image aspect ratio 3.33 is outside 0.4..2.5"
    assert image_problem(b"x" * 10_001, limits) == "image is 10001 bytes, more than the 10000 allowed"
    assert image_problem(b"GIF89a", limits) == "image must be a PNG or JPEG file"
