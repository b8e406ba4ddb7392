"""The inference.sh API client (httpx), one call per method, errors translated in one place.

Connection layer: httpx's default transport scans its connection pool on every
request and collapses at a few hundred concurrent tasks; ``ClientPool`` runs
httpx on ``http11.Http11Transport`` instead (see there).

The API key travels only in the ``Authorization`` header of API calls — never
to download or upload URLs (those are other hosts in production) and never
into a message.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

from ..core.schemas import LimitClass
from .apierrors import ApiError, BadRequest, ResponseLost, from_problem, parse_retry_after, translate_transport
from .downloads import MAX_DOWNLOAD_BYTES, USER_AGENT, Downloaded, FileFetcher
from .http11 import Http11Transport
from .pacing import Pacing, Turn
from .transports import HttpxWire, Response, Wire, proxy_for
from .wire import TaskView, parse_problem, unwrap

__all__ = ["ApiClient", "ClientPool", "Downloaded", "HttpxWire", "Secret", "Timeouts"]

STREAM_DRAIN_SECONDS = 1.0


class Secret:
    """An API key that never shows itself in reprs, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 10.0
    request: float = 30.0  # read/write of an ordinary API call
    stream_idle: float = 30.0  # a stream that sends only heartbeats (or nothing) this long is given up
    download: float = 60.0


class ApiClient:
    """The API calls. The API key goes only into the ``Authorization`` header of API calls."""

    def __init__(self, wire: Wire, base_url: str, key: Secret, timeouts: Timeouts,
                 pacing: Pacing | None = None) -> None:
        self._wire = wire
        self._files = FileFetcher(wire, timeouts.connect, timeouts.download)
        self.pacing = pacing or Pacing()
        self._base = base_url.rstrip("/")
        self._auth = [(b"Authorization", f"Bearer {key.reveal()}".encode()),
                      (b"Content-Type", b"application/json"), (b"User-Agent", USER_AGENT.encode())]
        self._stream_headers = [*self._auth, (b"Accept", b"application/x-ndjson")]
        self._t = timeouts

    def _url(self, path: str) -> str:
        return f"{self._base}{path}"

    async def _send(self, method: str, url: str, headers: Sequence[tuple[bytes, bytes]], body: bytes | None,
                    read_timeout: float) -> Response:
        return await self._wire.send(method, url, headers, body, connect_timeout=self._t.connect,
                                     read_timeout=read_timeout)

    async def _call(self, method: str, path: str, what: str, body: Any = None, *, kind: LimitClass = "reads",
                    turn: Turn | None = None) -> Any:
        """One API call, paced in its limit class. A 429 created nothing: a read or an upload
        waits for its next turn and goes again; a submit raises ``RateLimited`` (the runner
        decides, and records, what happens next)."""
        content = json.dumps(body).encode() if body is not None else None
        while True:
            if turn is None:
                own, turn = True, await self.pacing[kind].acquire()
            else:
                own = False
            with turn, translate_transport(what):
                response = await self._send(method, self._url(path), self._auth, content, self._t.request)
                try:
                    data = await response.read()
                finally:
                    await response.aclose()
                turn.answered(response.status, response.header)
            if response.status == 429 and own and kind != "runs":
                turn = None
                continue
            break
        if response.status >= 400:
            retry = parse_retry_after(response.header("retry-after"), response.header("x-ratelimit-reset"))
            raise from_problem(parse_problem(response.status, data), retry, what)
        if response.status == 204 or not data:
            return None
        try:
            return unwrap(json.loads(data))
        except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
            # A 2xx whose body is not JSON: for a submit, a task may exist.
            raise ResponseLost(f"{what}: the answer was not JSON (HTTP {response.status})") from None

    async def submit(self, app: str, request: Mapping[str, Any], webhook: str | None = None, *,
                     turn: Turn | None = None) -> TaskView:
        """``POST /apps/run`` (in ``turn``, taken from ``pacing.runs``, when the caller took one
        first). See ``apierrors`` for what each failure means for money; a 429 is raised as
        ``RateLimited`` when the caller holds the turn, else waited out here."""
        body: dict[str, Any] = {"app": app, "input": request}
        if webhook:
            body["webhook"] = webhook
        task = TaskView.parse(await self._call("POST", "/apps/run", "submit", body, kind="runs", turn=turn))
        if task is None:
            raise ResponseLost("submit: the answer holds no task id")
        return task

    async def get_task(self, task_id: str) -> TaskView:
        task = TaskView.parse(await self._call("GET", f"/tasks/{task_id}", f"task {task_id}"))
        if task is None:
            raise BadRequest(f"task {task_id}: the answer holds no task")
        return task

    async def get_app(self, name: str) -> dict[str, Any]:
        """``GET /apps/{namespace}/{name}``: the app, its id, version and schemas."""
        app = await self._call("GET", f"/apps/{name}", f"app {name}")
        if not isinstance(app, dict):
            raise BadRequest(f"app {name}: unexpected answer")
        return app

    async def estimate(self, app_id: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /store/apps/{appId}/estimate``: the service's price for one request (microcents)."""
        answer = await self._call("POST", f"/store/apps/{app_id}/estimate", "estimate", {"input": request})
        if not isinstance(answer, dict):
            raise BadRequest("estimate: unexpected answer")
        return answer

    async def cancel(self, task_id: str) -> None:
        await self._call("POST", f"/tasks/{task_id}/cancel", f"cancel {task_id}")

    async def list_tasks(self, created_since: str, cursor: str | None = None,
                         limit: int = 100) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the caller's tasks created at or after ``created_since`` (ISO 8601), newest first."""
        body: dict[str, Any] = {
            "limit": limit,
            "filters": [{"field": "created_at", "operator": "gte", "value": created_since}],
            "sort": [{"field": "created_at", "dir": "desc"}],
        }
        if cursor:
            body["cursor"] = cursor
        page = await self._call("POST", "/tasks/list", "list tasks", body)
        if not isinstance(page, dict):
            raise BadRequest("list tasks: unexpected answer")
        items = [t for t in page.get("items") or [] if isinstance(t, dict)]
        nxt = page.get("next_cursor") if page.get("has_next", bool(page.get("next_cursor"))) else None
        return items, nxt if isinstance(nxt, str) and nxt else None

    async def follow(self, task_id: str, idle_timeout: float | None = None) -> AsyncIterator[TaskView]:
        """Task updates from ``GET /tasks/{id}/stream`` until a terminal one.

        Ends without a terminal update when the stream closes or only sends
        heartbeats for ``idle_timeout``; the caller then reconciles with ``get_task``.
        Raises ``ApiError`` for an error answer or a broken connection.
        """
        idle = self._t.stream_idle if idle_timeout is None else idle_timeout
        what = f"stream {task_id}"
        task: dict[str, Any] = {"id": task_id}
        with translate_transport(what):
            while True:  # opening a stream is a read: paced, and a 429 waits for the next turn
                with await self.pacing.reads.acquire() as turn:
                    response = await self._send("GET", self._url(f"/tasks/{task_id}/stream"), self._stream_headers,
                                                None, idle)
                    turn.answered(response.status, response.header)
                if response.status != 429:
                    break
                await response.aclose()
            try:
                if response.status >= 400:
                    raise from_problem(parse_problem(response.status, await response.read()), None, what)
                chunks = _with_final_newline(response.aiter())
                last = time.monotonic()
                pending = b""
                async for chunk in chunks:
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        event = _event(line)
                        if event is None:
                            continue
                        if event.get("type") == "heartbeat":
                            if time.monotonic() - last > idle:
                                return
                            continue
                        last = time.monotonic()
                        if not _merge(task, event):
                            continue
                        view = TaskView.parse(task)
                        if view is None:
                            continue
                        if view.status.terminal:
                            # Read the (empty) rest of the stream first: a response closed half-read
                            # costs its keep-alive connection, and a new connection per task is slow.
                            with anyio.move_on_after(STREAM_DRAIN_SECONDS):
                                async for _ in chunks:
                                    pass
                            yield view
                            return
                        yield view
            finally:
                await response.aclose()

    async def upload(self, data: bytes, filename: str, content_type: str) -> str:
        """``POST /files`` then ``PUT`` the bytes to the returned upload URL; returns the file's ``uri``."""
        spec = {"files": [{"uri": "", "filename": filename, "content_type": content_type, "path": "",
                           "size": len(data), "public": False}]}
        created = await self._call("POST", "/files", f"upload {filename}", spec, kind="uploads")
        entry = created[0] if isinstance(created, list) and created else created
        if not isinstance(entry, dict) or not entry.get("upload_url") or not entry.get("uri"):
            raise BadRequest(f"upload {filename}: the answer holds no upload_url/uri")
        with translate_transport(f"upload {filename}"):
            put = await self._send("PUT", str(entry["upload_url"]),
                                   [(b"Content-Type", content_type.encode()), (b"User-Agent", USER_AGENT.encode())],
                                   data, self._t.download)
            try:
                answer = await put.read()
            finally:
                await put.aclose()
        if put.status >= 300:
            # The file host never saw the API key: its 401/403 (an expired signed URL, say) is no
            # reason to blame the key or stop the run, so no status-based class here.
            detail = parse_problem(put.status, answer).detail
            raise ApiError(f"upload {filename}: the upload URL answered HTTP {put.status}"
                           f"{': ' + detail if detail else ''}", status=put.status)
        return str(entry["uri"])

    async def download(self, uri: str, name: str, spill_dir: Path, *, max_bytes: int = MAX_DOWNLOAD_BYTES,
                       accept: tuple[str, ...] = ("image/",), kind: str = "image") -> Downloaded:
        """Fetch an output file (see ``downloads.FileFetcher.download``); no key goes with it."""
        return await self._files.download(uri, name, spill_dir, max_bytes=max_bytes, accept=accept, kind=kind)


class ClientPool:
    """The run's connection layer: one ``Http11Transport`` (idle connections kept in
    per-origin stacks, O(1) to take at any concurrency) shared by every worker.

    ``api`` is the client every worker shares. With an explicit ``transport``
    (tests use ``httpx.MockTransport``) that transport is used instead; behind an
    HTTP(S) proxy from the environment, httpx's own transport is (it speaks proxies).
    """

    def __init__(self, base_url: str, key: Secret, concurrency: int, *, timeouts: Timeouts | None = None,
                 transport: httpx.AsyncBaseTransport | None = None, pacing: Pacing | None = None) -> None:
        self.timeouts = timeouts or Timeouts()
        if transport is None:
            tls = ssl.create_default_context()
            proxy = proxy_for(base_url)
            transport = (httpx.AsyncHTTPTransport(proxy=proxy, verify=tls) if proxy
                         else Http11Transport(ssl_context=tls, max_idle_per_origin=2 * concurrency + 16))
        self._transport = transport
        wire: Wire = transport if isinstance(transport, Http11Transport) else HttpxWire(transport)
        self.pacing = pacing or Pacing()
        self._api = ApiClient(wire, base_url, key, self.timeouts, self.pacing)

    @property
    def api(self) -> ApiClient:
        """The client every worker shares (one connection pool, one pacing)."""
        return self._api

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> ClientPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def _with_final_newline(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The stream's chunks, then a newline: a last line that lacks its own is still a line."""
    async for chunk in chunks:
        yield chunk
    yield b"\n"


def _event(line: bytes) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        event = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return event if isinstance(event, dict) else None


def _merge(task: dict[str, Any], event: dict[str, Any]) -> bool:
    """Fold one stream event into ``task``; False for events that are not task updates."""
    if "fields" in event and isinstance(event.get("data"), dict):
        task.update(event["data"])  # a partial update
    elif "event" in event and "id" not in event:
        return False  # LLM deltas and other events: not for image apps
    else:
        data = event.get("data")
        task.update(data if isinstance(data, dict) and "id" in data else event)
    return True


