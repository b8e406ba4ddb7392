"""The files other apps return: MP4 boxes and H.264 units, WAV through ``wave``, several PNGs —
downloaded over HTTP with their content types, sized and timed by the task's input."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from kling_pipeline.emulator import EmulatorServer
from kling_pipeline.emulator.h264 import encode_h264, nal_unit
from kling_pipeline.emulator.media import encode_mp4, encode_wav

from .helpers import decode_png, wait_terminal
from .media_check import read_mp4, read_wav

VIDEO, IMAGES = "klingai/video-o1", "google/gemini-2-5-flash-image"
SPEECH, SOUND = "elevenlabs/tts", "elevenlabs/sound-effects"


def output(api: httpx.Client, app: str, value: dict[str, Any]) -> dict[str, Any]:
    created = api.post("/apps/run", json={"app": app, "input": value})
    assert created.status_code == 200, created.text
    task = wait_terminal(api, created.json()["data"]["id"])
    assert task["status"] == 10, task["error"]
    result: dict[str, Any] = task["output"]
    return result


def download(uri: str, content_type: str) -> bytes:
    response = httpx.get(uri)
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert int(response.headers["content-length"]) == len(response.content)
    return response.content


@pytest.mark.parametrize(
    ("value", "seconds", "size"),
    [
        ({"prompt": "a lake", "duration": 7, "aspect_ratio": "9:16"}, 7, (90, 160)),
        ({"prompt": "defaults"}, 5, (160, 90)),  # duration 5 and no aspect ratio: the table's default
        ({"prompt": "square", "duration": 3, "aspect_ratio": "1:1"}, 3, (120, 120)),
    ],
)
def test_a_video_is_an_mp4_whose_boxes_say_the_requested_length(
    api: httpx.Client, value: dict[str, Any], seconds: int, size: tuple[int, int]
) -> None:
    uri = output(api, VIDEO, value)["video"]

    mp4 = read_mp4(download(uri, "video/mp4"))

    assert mp4.major_brand == b"isom" and mp4.top_level == ["ftyp", "moov", "mdat"]  # metadata before the data
    assert (mp4.timescale, mp4.duration, mp4.seconds) == (1000, 1000 * seconds, seconds)
    assert mp4.track_duration == mp4.media_duration == mp4.sample_ticks == 1000 * seconds
    assert (mp4.handler, mp4.codec, (mp4.width, mp4.height)) == (b"vide", b"avc1", size)
    assert mp4.sample_count == seconds and mp4.nal_types == [5] + [1] * (seconds - 1)  # an IDR, then P frames


def test_the_image_scale_sizes_videos_too(make_emu: Callable[..., EmulatorServer],
                                           make_client: Callable[..., httpx.Client]) -> None:
    api = make_client(make_emu(image_scale=16))

    mp4 = read_mp4(download(output(api, VIDEO, {"prompt": "small", "aspect_ratio": "16:9"})["video"], "video/mp4"))

    assert (mp4.width, mp4.height) == (80, 46)  # 1280x720 / 16 = 80x45, rounded up to even for 4:2:0


def test_several_images_are_distinct_pngs_of_the_asked_size(api: httpx.Client) -> None:
    images = output(api, IMAGES, {"prompt": "three owls", "num_images": 3, "aspect_ratio": "16:9"})["images"]

    pngs = [download(uri, "image/png") for uri in images]

    assert len(images) == len(set(images)) == 3 and all(isinstance(uri, str) for uri in images)
    assert [decode_png(png)[:2] for png in pngs] == [(171, 96)] * 3  # 1365x768 / 8
    assert len({tuple(decode_png(png)[2]) for png in pngs}) == 3  # different pixels, not only metadata


@pytest.mark.parametrize(
    ("app", "value", "seconds"),
    [
        (SPEECH, {"text": "x" * 60}, 4.0),  # 15 characters a second
        (SPEECH, {"text": "Hi"}, 0.5),  # at least half a second
        (SOUND, {"text": "rain", "duration_seconds": 2.5}, 2.5),
        (SOUND, {"text": "thunder", "duration_seconds": None}, 5.0),  # 'automatic': 5 s
    ],
)
def test_audio_is_a_wav_as_long_as_the_input_says(api: httpx.Client, app: str, value: dict[str, Any],
                                                  seconds: float) -> None:
    wav = read_wav(download(output(api, app, value)["audio"], "audio/wav"))

    assert (wav.channels, wav.sample_width, wav.rate) == (1, 2, 16_000)
    assert wav.frames == round(seconds * 16_000) and wav.seconds == seconds
    assert max(struct.unpack(f"<{wav.frames}h", wav.samples)) > 1000  # a tone, not silence


def test_same_input_gives_the_same_bytes_on_another_emulator(make_emu: Callable[..., EmulatorServer],
                                                             make_client: Callable[..., httpx.Client]) -> None:
    first, second = make_client(make_emu()), make_client(make_emu())
    value = {"prompt": "repeatable", "duration": 3}

    a, b = (download(output(api, VIDEO, value)["video"], "video/mp4") for api in (first, second))
    c = download(output(first, VIDEO, value)["video"], "video/mp4")  # sample index 1

    assert a == b and a != c


def test_mp4_duration_keeps_milliseconds_and_sizes_become_even() -> None:
    mp4 = read_mp4(encode_mp4(2.5, 33, 17, "seed"))

    assert (mp4.duration, mp4.sample_count, mp4.sample_ticks) == (2500, 3, 2500)
    assert (mp4.width, mp4.height) == (34, 18)


def test_wav_rounds_to_the_sample() -> None:
    wav = read_wav(encode_wav(0.1234, "seed", sample_rate=8_000))

    assert (wav.rate, wav.frames) == (8_000, 987)


def test_nal_units_escape_start_code_patterns() -> None:
    assert nal_unit(3, 5, b"\x00\x00\x01\x00\x00\x00\x00\x00\x03") == (
        b"\x65\x00\x00\x03\x01\x00\x00\x03\x00\x00\x03\x00\x03"
    )
    stream = encode_h264(32, 32, 2, [(200, 100, 150)])
    assert stream.sps[0] & 0x1F == 7 and stream.pps[0] & 0x1F == 8
    assert [f[0] & 0x1F for f in stream.frames] == [5, 1]
    assert all(b"\x00\x00\x00" not in f and b"\x00\x00\x01" not in f for f in (stream.sps, stream.pps, *stream.frames))
    with pytest.raises(ValueError, match="even"):
        encode_h264(31, 32, 1, [(0, 0, 0)])
