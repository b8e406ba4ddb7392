"""The emulator's MP4 and WAV in a real headless Chromium: metadata loads with the requested
duration and size, and the video's first frame decodes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from report.browser import chromium, require_browser

from .helpers import wait_terminal

pytestmark = pytest.mark.browser

PROBE = """
const done = arguments[arguments.length - 1];
const media = document.querySelector('video, audio');
const report = (extra) => done(Object.assign({duration: media.duration, width: media.videoWidth || 0,
                                              height: media.videoHeight || 0, error: media.error && media.error.code},
                                             extra));
const frame = (tries) => {  // a decoded frame may reach the canvas a little after loadeddata
  if (!media.videoWidth) return report({});
  const canvas = document.createElement('canvas');
  canvas.width = media.videoWidth; canvas.height = media.videoHeight;
  const context = canvas.getContext('2d', {willReadFrequently: true});
  context.drawImage(media, 0, 0);
  const pixel = Array.from(context.getImageData(1, 1, 1, 1).data);
  if (pixel[3] === 0 && tries > 0) return setTimeout(() => frame(tries - 1), 100);
  report({ready: media.readyState, pixel: pixel});
};
if (media.error) report({});
else if (media.readyState >= 2) frame(50);
else { media.addEventListener('loadeddata', () => frame(50)); media.addEventListener('error', () => report({})); }
"""


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    require_browser()
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as browser:
        browser.set_script_timeout(20)
        yield browser


def output_uri(api: httpx.Client, app: str, value: dict[str, Any], field: str) -> str:
    created = api.post("/apps/run", json={"app": app, "input": value})
    task = wait_terminal(api, created.json()["data"]["id"])
    uri: str = task["output"][field]
    return uri


def test_chromium_loads_the_video_metadata_and_decodes_its_frame(driver: Any, api: httpx.Client) -> None:
    uri = output_uri(api, "klingai/video-o1", {"prompt": "a lake", "duration": 7, "aspect_ratio": "9:16"}, "video")

    driver.get(uri)  # the browser's own media page, same origin as the video: the canvas is readable
    seen = driver.execute_async_script(PROBE)

    assert seen["error"] is None
    assert (seen["duration"], seen["width"], seen["height"]) == (7, 90, 160)
    assert seen["ready"] >= 2 and seen["pixel"][3] == 255 and seen["pixel"][:3] != [0, 0, 0]


def test_chromium_loads_the_audio_metadata(driver: Any, api: httpx.Client) -> None:
    uri = output_uri(api, "elevenlabs/sound-effects", {"text": "rain", "duration_seconds": 2.5}, "audio")

    driver.get(uri)
    seen = driver.execute_async_script(PROBE)

    assert seen["error"] is None and seen["duration"] == 2.5
