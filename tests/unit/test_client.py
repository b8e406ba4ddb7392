"""ApiClient over httpx.MockTransport: request shapes, the key's whereabouts, error mapping,
the NDJSON stream, the task listing, uploads and downloads; Secret; ClientPool's choice of wire."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from kling_pipeline.api import downloads as downloads_module
from kling_pipeline.api.apierrors import (
    ApiError,
    AuthFailed,
    BadRequest,
    ConnectFailed,
    DownloadFailed,
    NotFound,
    RateLimited,
    ResponseLost,
    ServerError,
    Unavailable,
)
from kling_pipeline.api.client import ApiClient, ClientPool, HttpxWire, Secret, Timeouts
from kling_pipeline.api.http11 import Http11Transport
from kling_pipeline.api.wire import Status

KEY = "inf_unit_test_key_never_shown_0123456789"
BASE = "http://api.test/"
APP = "klingai/image-o1@0pbaxv40"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4

pytestmark = pytest.mark.anyio

Handler = Callable[[httpx.Request], Any]


class Api:
    """An ApiClient whose server is ``handler``; every request is kept in ``seen``."""

    def __init__(self, handler: Handler, timeouts: Timeouts | None = None) -> None:
        self.seen: list[httpx.Request] = []

        async def record(request: httpx.Request) -> httpx.Response:
            await request.aread()
            self.seen.append(request)
            answer = handler(request)
            if not isinstance(answer, httpx.Response):
                answer = await answer
            assert isinstance(answer, httpx.Response)
            return answer

        self.client = ApiClient(HttpxWire(httpx.MockTransport(record)), BASE, Secret(KEY), timeouts or Timeouts())

    def body(self, index: int = -1) -> Any:
        return json.loads(self.seen[index].content)


def answer(payload: Any, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=payload, headers=headers)


def problem(status: int, code: str, detail: str, **headers: str) -> httpx.Response:
    body = {"type": f"https://inference.sh/problems/{code}", "title": code, "status": status, "detail": detail}
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json", **headers})


class Body(httpx.AsyncByteStream):
    """A response body given as chunks (bytes, or a number of seconds to pause); records what it gave."""

    def __init__(self, parts: Iterable[bytes | float]) -> None:
        self.parts = parts
        self.sent = 0
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            if isinstance(part, float):
                await anyio.sleep(part)
                continue
            self.sent += 1
            yield part

    async def aclose(self) -> None:
        self.closed = True


def ndjson(*events: Any) -> bytes:
    return b"".join((e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n" for e in events)


# --- submit and the other API calls -----------------------------------------------------------------------------

async def test_submit_request_shape_and_headers() -> None:
    api = Api(lambda r: answer({"data": {"id": "t1", "status": 1, "input": {"prompt": "x"}}}))
    view = await api.client.submit(APP, {"prompt": "x", "n": 1})
    assert (view.id, view.status) == ("t1", Status.PENDING)
    request = api.seen[0]
    assert (request.method, str(request.url)) == ("POST", "http://api.test/apps/run")
    assert api.body() == {"app": APP, "input": {"prompt": "x", "n": 1}}
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "kling-pipeline"


async def test_submit_with_webhook() -> None:
    api = Api(lambda r: answer({"id": "t1", "status": "queued"}))  # a bare task is accepted too
    view = await api.client.submit(APP, {"prompt": "x"}, "https://hooks.test/run/tok/job")
    assert view.id == "t1"
    assert api.body() == {"app": APP, "input": {"prompt": "x"}, "webhook": "https://hooks.test/run/tok/job"}


@pytest.mark.parametrize(("response", "cls", "status", "retry_after", "message"), [
    (problem(429, "rate_limited", "slow down", **{"retry-after": "7"}), RateLimited, 429, 7.0,
     "submit: slow down (HTTP 429, rate_limited)"),
    (problem(429, "rate_limited", "slow down", **{"x-ratelimit-reset": "3"}), RateLimited, 429, 3.0,
     "submit: slow down (HTTP 429, rate_limited)"),
    (problem(503, "app_maintenance", "paused", **{"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}), Unavailable,
     503, None, "submit: paused (HTTP 503, app_maintenance)"),
    (problem(500, "entitlement_unavailable", "try again"), Unavailable, 500, None,
     "submit: try again (HTTP 500, entitlement_unavailable)"),
    (problem(502, "bad_gateway", "upstream"), ServerError, 502, None, "submit: upstream (HTTP 502, bad_gateway)"),
    (httpx.Response(500, text="<html>oops</html>"), ServerError, 500, None, "submit: <html>oops</html> (HTTP 500)"),
    (problem(422, "validation_failed", "n must be <= 9"), BadRequest, 422, None,
     "submit: n must be <= 9 (HTTP 422, validation_failed)"),
    (problem(401, "unauthorized", f"bad key {KEY[:8]}"), AuthFailed, 401, None,
     "submit: the API key was refused (HTTP 401); check INFERENCE_API_KEY"),
])
async def test_submit_errors_are_mapped(response: httpx.Response, cls: type[ApiError], status: int,
                                        retry_after: float | None, message: str) -> None:
    api = Api(lambda r: response)
    with pytest.raises(ApiError) as info:
        await api.client.submit(APP, {"prompt": "x"})
    exc = info.value
    assert type(exc) is cls
    assert (exc.status, exc.retry_after, str(exc)) == (status, retry_after, message)
    assert KEY not in str(exc)


@pytest.mark.parametrize(("response", "message"), [
    (httpx.Response(200, text="<html>gateway page</html>"), "submit: the answer was not JSON (HTTP 200)"),
    (httpx.Response(201, content=b"{truncated"), "submit: the answer was not JSON (HTTP 201)"),
    (httpx.Response(200, content=b"[" * 100_000), "submit: the answer was not JSON (HTTP 200)"),
    (answer({"data": {"status": 1}}), "submit: the answer holds no task id"),
    (httpx.Response(200), "submit: the answer holds no task id"),
])
async def test_submit_odd_success_answers_are_lost_responses(response: httpx.Response, message: str) -> None:
    api = Api(lambda r: response)
    with pytest.raises(ResponseLost) as info:
        await api.client.submit(APP, {"prompt": "x"})
    assert str(info.value) == message
    assert info.value.created is None  # a task may exist: reconcile, never re-send blindly


@pytest.mark.parametrize(("exc", "cls", "message"), [
    (httpx.ConnectError("refused"), ConnectFailed, "submit: cannot connect: refused"),
    (httpx.ReadTimeout("slow"), ResponseLost, "submit: no answer in time (ReadTimeout)"),
    (httpx.RemoteProtocolError("reset"), ResponseLost, "submit: connection lost before the answer: reset"),
])
async def test_submit_transport_failures(exc: Exception, cls: type[ApiError], message: str) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc

    api = Api(fail)
    with pytest.raises(cls) as info:
        await api.client.submit(APP, {"prompt": "x"})
    assert str(info.value) == message


async def test_get_task_and_cancel() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/tasks/t1":
            return answer({"data": {"id": "t1", "status": 10, "output": {"image": "u"}}})
        if request.url.path == "/tasks/t2":
            return answer({"data": {"status": 10}})
        if request.url.path == "/tasks/t1/cancel":
            return httpx.Response(204)
        return problem(404, "not_found", "no such task")

    api = Api(handler)
    view = await api.client.get_task("t1")
    assert (view.id, view.status, view.output) == ("t1", Status.COMPLETED, {"image": "u"})
    assert (api.seen[0].method, api.seen[0].headers["authorization"]) == ("GET", f"Bearer {KEY}")
    with pytest.raises(BadRequest, match=r"^task t2: the answer holds no task$"):
        await api.client.get_task("t2")
    with pytest.raises(NotFound, match=r"^task t9: no such task \(HTTP 404, not_found\)$"):
        await api.client.get_task("t9")
    await api.client.cancel("t1")
    assert (api.seen[-1].method, api.seen[-1].url.path, api.seen[-1].content) == ("POST", "/tasks/t1/cancel", b"")


# --- the task listing -------------------------------------------------------------------------------------------

async def test_list_tasks_request_shape() -> None:
    api = Api(lambda r: answer({"data": {"items": [], "has_next": False}}))
    assert await api.client.list_tasks("2026-01-01T00:00:00Z") == ([], None)
    assert (api.seen[0].method, api.seen[0].url.path) == ("POST", "/tasks/list")
    assert api.body() == {
        "limit": 100,
        "filters": [{"field": "created_at", "operator": "gte", "value": "2026-01-01T00:00:00Z"}],
        "sort": [{"field": "created_at", "dir": "desc"}],
    }
    await api.client.list_tasks("2026-01-01T00:00:00Z", "c2", limit=5)
    assert api.body()["cursor"] == "c2"
    assert api.body()["limit"] == 5


@pytest.mark.parametrize(("page", "items", "cursor"), [
    ({"items": [{"id": "a"}, "junk", 3, {"id": "b"}], "next_cursor": "c2", "has_next": True},
     [{"id": "a"}, {"id": "b"}], "c2"),
    ({"items": [{"id": "a"}], "next_cursor": "c2", "has_next": False}, [{"id": "a"}], None),
    ({"items": [{"id": "a"}], "next_cursor": "c2"}, [{"id": "a"}], "c2"),  # no has_next: the cursor says
    ({"items": [], "next_cursor": ""}, [], None),
    ({"items": [], "next_cursor": 5, "has_next": True}, [], None),
    ({"items": None, "has_next": True}, [], None),
    ({}, [], None),
])
async def test_list_tasks_pages(page: dict[str, Any], items: list[Any], cursor: str | None) -> None:
    api = Api(lambda r: answer({"data": page}))
    assert await api.client.list_tasks("2026-01-01T00:00:00Z") == (items, cursor)


async def test_list_tasks_unexpected_answer() -> None:
    api = Api(lambda r: answer({"data": [1, 2]}))
    with pytest.raises(BadRequest, match=r"^list tasks: unexpected answer$"):
        await api.client.list_tasks("2026-01-01T00:00:00Z")


# --- follow() ---------------------------------------------------------------------------------------------------

def stream_api(*parts: bytes | float, status: int = 200) -> tuple[Api, Body]:
    body = Body(list(parts))
    return Api(lambda r: httpx.Response(status, stream=body)), body


async def follow(api: Api, task_id: str = "t1", idle_timeout: float | None = None) -> list[Any]:
    return [(v.status, v.progress, v.output, v.error) async for v in api.client.follow(task_id, idle_timeout)]


async def test_follow_merges_updates_and_stops_at_the_terminal_line() -> None:
    data = ndjson(
        {"id": "t1", "status": 2, "input": {"prompt": "x"}},
        {"type": "heartbeat"},
        {"data": {"status": 7, "progress": 40}, "fields": ["status", "progress"]},
        {"event": "delta", "text": "tokens of an LLM"},
        b"this line is not JSON",
        b"[1, 2, 3]",
        b"[" * 100_000,
        b"",
        {"data": {"progress": 80}, "fields": ["progress"]},
        {"data": {"id": "t1", "status": 9, "progress": 95}},  # a whole task inside data, without fields
        {"id": "t1", "status": 10, "output": {"image": "https://f/1.png"}},
        {"id": "t1", "status": 11, "error": "after the end"},
    )
    api, body = stream_api(data)
    views = await follow(api)
    assert views == [
        (Status.PENDING, None, None, None),
        (Status.PENDING, 40.0, None, None),
        (Status.PENDING, 80.0, None, None),
        (Status.PENDING, 95.0, None, None),
        (Status.COMPLETED, 95.0, {"image": "https://f/1.png"}, None),
    ]
    request = api.seen[0]
    assert (request.method, str(request.url)) == ("GET", "http://api.test/tasks/t1/stream")
    assert request.headers["accept"] == "application/x-ndjson"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert body.closed


async def test_follow_lines_split_across_chunks() -> None:
    data = ndjson({"id": "t1", "status": "running", "progress": 10}, {"type": "heartbeat"},
                  {"data": {"status": "completed", "output": {"image": "u"}}, "fields": ["status", "output"]})
    api, body = stream_api(*[data[i:i + 3] for i in range(0, len(data), 3)])
    assert await follow(api) == [(Status.PENDING, 10.0, None, None), (Status.COMPLETED, 10.0, {"image": "u"}, None)]
    assert body.closed


async def test_follow_terminal_line_without_its_newline() -> None:
    data = ndjson({"id": "t1", "status": 7}) + json.dumps({"id": "t1", "status": 11, "error": "boom"}).encode()
    api, _ = stream_api(data)
    assert await follow(api) == [(Status.PENDING, None, None, None), (Status.FAILED, None, None, "boom")]


async def test_follow_stream_closing_early_ends_without_terminal() -> None:
    api, body = stream_api(ndjson({"id": "t1", "status": 7, "progress": 5}, {"type": "heartbeat"}))
    assert await follow(api) == [(Status.PENDING, 5.0, None, None)]
    assert body.closed


async def test_follow_only_heartbeats_gives_up_after_the_idle_timeout() -> None:
    beat = ndjson({"type": "heartbeat"})
    parts: list[bytes | float] = [ndjson({"id": "t1", "status": 7})]
    for _ in range(1000):
        parts += [0.01, beat]
    api, body = stream_api(*parts)
    assert await follow(api, idle_timeout=0.05) == [(Status.PENDING, None, None, None)]
    assert 0 < body.sent < 1000  # gave up well before the server stopped
    assert body.closed


async def test_follow_error_answer() -> None:
    api = Api(lambda r: problem(404, "not_found", "no task t1"))
    with pytest.raises(NotFound, match=r"^stream t1: no task t1 \(HTTP 404, not_found\)$"):
        await follow(api)


async def test_follow_broken_connection() -> None:
    class Broken(Body):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield ndjson({"id": "t1", "status": 7})
            raise httpx.ReadError("connection reset")

    body = Broken([])
    api = Api(lambda r: httpx.Response(200, stream=body))
    seen = []

    async def read_all() -> None:
        async for view in api.client.follow("t1"):
            seen.append(view.status)

    with pytest.raises(ResponseLost, match=r"^stream t1: connection lost before the answer: connection reset$"):
        await read_all()
    assert seen == [Status.PENDING]
    assert body.closed


# --- uploads ----------------------------------------------------------------------------------------------------

async def test_upload_posts_then_puts_without_the_key() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/files":
            return answer({"data": [{"uri": "inf://files/f1", "upload_url": "https://files.test/put/f1?sig=abc"}]})
        return httpx.Response(200)

    api = Api(handler)
    uri = await api.client.upload(PNG, "ref.png", "image/png")
    assert uri == "inf://files/f1"
    post, put = api.seen
    assert (post.method, str(post.url), post.headers["authorization"]) == ("POST", "http://api.test/files",
                                                                            f"Bearer {KEY}")
    assert api.body(0) == {"files": [{"uri": "", "filename": "ref.png", "content_type": "image/png", "path": "",
                                      "size": len(PNG), "public": False}]}
    assert (put.method, str(put.url), put.content) == ("PUT", "https://files.test/put/f1?sig=abc", PNG)
    assert put.headers["content-type"] == "image/png"
    assert "authorization" not in put.headers
    assert KEY.encode() not in put.content and all(KEY not in v for v in put.headers.values())


async def test_upload_answer_as_an_object() -> None:
    api = Api(lambda r: answer({"data": {"uri": "inf://f2", "upload_url": "https://files.test/f2"}})
              if r.method == "POST" else httpx.Response(204))
    assert await api.client.upload(b"x", "a.png", "image/png") == "inf://f2"


@pytest.mark.parametrize("created", [{"data": []}, {"data": [{"uri": "inf://f"}]}, {"data": [{"upload_url": "u"}]},
                                     {"data": "nope"}])
async def test_upload_answer_without_urls(created: Any) -> None:
    api = Api(lambda r: answer(created))
    with pytest.raises(BadRequest, match=r"^upload a\.png: the answer holds no upload_url/uri$"):
        await api.client.upload(b"x", "a.png", "image/png")
    assert len(api.seen) == 1


@pytest.mark.parametrize("status", [401, 403, 500])
async def test_upload_put_refused_is_not_blamed_on_the_api_key(status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return answer({"data": [{"uri": "inf://f", "upload_url": "https://files.test/f"}]})
        return httpx.Response(status, text="<Error><Code>SignatureDoesNotMatch</Code></Error>")

    api = Api(handler)
    with pytest.raises(ApiError) as info:
        await api.client.upload(b"x", "a.png", "image/png")
    # the file host never saw the key: a refusal there says nothing about it, and must not stop the run
    assert not info.value.fatal
    assert info.value.status == status
    assert str(info.value) == (f"upload a.png: the upload URL answered HTTP {status}: "
                               "<Error><Code>SignatureDoesNotMatch</Code></Error>")


async def test_upload_post_errors_are_api_errors() -> None:
    api = Api(lambda r: problem(401, "unauthorized", "bad key"))
    with pytest.raises(AuthFailed):
        await api.client.upload(b"x", "a.png", "image/png")


async def test_upload_put_transport_failure() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return answer({"data": [{"uri": "inf://f", "upload_url": "https://files.test/f"}]})
        raise httpx.WriteError("broken pipe")

    api = Api(handler)
    with pytest.raises(ResponseLost, match=r"^upload a\.png: connection lost before the answer: broken pipe$"):
        await api.client.upload(b"x", "a.png", "image/png")


# --- downloads --------------------------------------------------------------------------------------------------

def file_api(status: int = 200, content_type: str | None = "image/png", body: Any = PNG,
             length: str | None = None) -> Api:
    def handler(request: httpx.Request) -> httpx.Response:
        headers = {} if content_type is None else {"content-type": content_type}
        if isinstance(body, bytes):
            response = httpx.Response(status, headers=headers, content=body)
        else:
            response = httpx.Response(status, headers=headers, stream=body)
        if length is not None:
            response.headers["content-length"] = length
        return response

    return Api(handler)


async def test_download_hashes_and_never_sends_the_key(tmp_path: Path) -> None:
    api = file_api(content_type="Image/PNG; charset=binary")
    got = await api.client.download("https://files.test/out/1.png?sig=x", "a.png", tmp_path)
    assert (got.data, got.spilled, got.size) == (PNG, None, len(PNG))
    assert got.sha256 == hashlib.sha256(PNG).hexdigest()
    assert got.content_type == "image/png"
    request = api.seen[0]
    assert (request.method, str(request.url)) == ("GET", "https://files.test/out/1.png?sig=x")
    assert "authorization" not in request.headers
    assert all(KEY not in v for v in request.headers.values())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("api", "message"), [
    (file_api(status=404), "download a.png: HTTP 404"),
    (file_api(status=500), "download a.png: HTTP 500"),
    (file_api(content_type="text/html"), "download a.png: expected an image, got text/html"),
    (file_api(content_type=None), "download a.png: expected an image, got no type"),
    (file_api(body=b""), "download a.png: empty file"),
    (file_api(length="2000"), "download a.png: 2000 bytes is over the 1000 cap"),
    (file_api(body=Body([PNG[:600], PNG[600:]])), "download a.png: more than 1000 bytes"),
    (file_api(body=Body([PNG[:600], PNG[600:]]), length="10"), "download a.png: more than 1000 bytes"),
], ids=["404", "500", "html", "no-type", "empty", "declared-size", "streamed-size", "understated-size"])
async def test_download_checks(tmp_path: Path, api: Api, message: str) -> None:
    assert len(PNG) > 1000
    with pytest.raises(DownloadFailed) as info:
        await api.client.download("https://files.test/1.png", "a.png", tmp_path, max_bytes=1000)
    assert str(info.value) == message


async def test_download_accepts_other_types_when_asked(tmp_path: Path) -> None:
    api = file_api(content_type="application/octet-stream")
    got = await api.client.download("https://files.test/1", "a.bin", tmp_path, accept=())
    assert (got.data, got.content_type) == (PNG, "application/octet-stream")


async def test_download_spills_large_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(downloads_module, "SPILL_BYTES", 100)
    api = file_api(body=Body([PNG[i:i + 70] for i in range(0, len(PNG), 70)]))
    got = await api.client.download("https://files.test/1.png", "sub/a.png", tmp_path / "out")
    assert got.data is None and got.spilled is not None
    assert got.spilled.parent == tmp_path / "out"
    assert got.spilled.name.startswith(".sub_a.png.")
    assert got.spilled.read_bytes() == PNG
    assert (got.size, got.sha256) == (len(PNG), hashlib.sha256(PNG).hexdigest())


async def test_download_failure_after_spilling_removes_the_temp_file(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(downloads_module, "SPILL_BYTES", 100)

    class Cut(Body):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield PNG[:300]
            raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")

    api = file_api(body=Cut([]))
    with pytest.raises(ResponseLost, match=r"^download a\.png: connection lost before the answer: peer closed"):
        await api.client.download("https://files.test/1.png", "a.png", tmp_path)
    assert list(tmp_path.iterdir()) == []


async def test_download_connect_failure(tmp_path: Path) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("timed out")

    with pytest.raises(ConnectFailed, match=r"^download a\.png: cannot connect: timed out$"):
        await Api(fail).client.download("https://files.test/1.png", "a.png", tmp_path)


# --- the key ----------------------------------------------------------------------------------------------------

def test_secret_never_shows_itself() -> None:
    secret = Secret(KEY)
    shown = [repr(secret), str(secret), f"{secret}", f"{secret!r}", format(secret), repr([secret]),
             repr({"key": secret})]
    assert all(KEY not in text for text in shown)
    assert repr(secret) == "Secret('***')"
    assert secret.reveal() == KEY
    with pytest.raises(AttributeError):
        secret.__dict__  # noqa: B018  (slots: nothing else holds the value)


async def test_timeouts_reach_the_transport(tmp_path: Path) -> None:
    api = Api(lambda r: answer({"id": "t1", "status": 10}) if r.url.host == "api.test"
              else httpx.Response(200, headers={"content-type": "image/png"}, content=PNG),
              Timeouts(connect=1.0, request=2.0, stream_idle=3.0, download=4.0))
    await api.client.get_task("t1")
    await api.client.download("https://files.test/1.png", "a.png", tmp_path)
    assert [r.extensions["timeout"] for r in api.seen] == [
        {"connect": 1.0, "read": 2.0, "write": 2.0, "pool": 2.0},
        {"connect": 1.0, "read": 4.0, "write": 4.0, "pool": 4.0},
    ]


# --- ClientPool -------------------------------------------------------------------------------------------------

async def test_client_pool_uses_httpx_wire_for_a_mock_transport() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer({"data": {"id": "t1", "status": 10}})

    async with ClientPool(BASE, Secret(KEY), 4, transport=httpx.MockTransport(handler)) as pool:
        api = pool.api
        assert isinstance(api._wire, HttpxWire)
        assert pool.api is api
        assert (await api.get_task("t1")).status is Status.COMPLETED
    assert [str(r.url) for r in seen] == ["http://api.test/tasks/t1"]
    assert seen[0].headers["authorization"] == f"Bearer {KEY}"


async def test_client_pool_default_is_the_lean_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.test:3128")
    async with ClientPool("http://127.0.0.1:9", Secret(KEY), 4) as pool:  # loopback: never through a proxy
        assert isinstance(pool.api._wire, Http11Transport)
    async with ClientPool("http://api.test", Secret(KEY), 4) as pool:
        assert isinstance(pool._transport, httpx.AsyncHTTPTransport)
        assert isinstance(pool.api._wire, HttpxWire)
    monkeypatch.delenv("HTTP_PROXY")
    async with ClientPool("http://api.test", Secret(KEY), 4) as pool:
        assert isinstance(pool.api._wire, Http11Transport)
