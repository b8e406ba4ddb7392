"""Downloads follow a file host's redirects, without the API key; an unmapped submit failure is unknown."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from kling_pipeline.api.apierrors import DownloadFailed
from kling_pipeline.api.client import ApiClient, HttpxWire, Secret, Timeouts

pytestmark = pytest.mark.anyio

KEY = "inf_unit_test_key_never_leaves_api_calls"


def client(handler) -> ApiClient:  # type: ignore[no-untyped-def]
    return ApiClient(HttpxWire(httpx.MockTransport(handler)), "https://api.test", Secret(KEY), Timeouts())


async def test_a_download_follows_redirects_without_the_key(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "files.test":
            return httpx.Response(302, headers={"Location": "https://cdn.test/real.png?sig=1"})
        if request.url.path == "/real.png":
            return httpx.Response(307, headers={"Location": "/final.png"})
        return httpx.Response(200, headers={"Content-Type": "image/png"}, content=b"\x89PNG image")

    got = await client(handler).download("https://files.test/1.png", "a.png", tmp_path)
    assert got.data == b"\x89PNG image"
    assert [str(r.url) for r in seen] == ["https://files.test/1.png", "https://cdn.test/real.png?sig=1",
                                          "https://cdn.test/final.png"]
    assert all("authorization" not in r.headers for r in seen)


async def test_a_redirect_loop_is_a_download_failure(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "https://files.test/again.png"})

    with pytest.raises(DownloadFailed, match=r"^download a\.png: more than 5 redirects$"):
        await client(handler).download("https://files.test/1.png", "a.png", tmp_path)
