"""The inference.sh API client (httpx), one call per method, errors translated in one place.

Connection layer: one ``httpx.AsyncClient`` scans its connection pool on every
request, which collapses at a few hundred concurrent tasks. ``ClientPool``
keeps several small clients ("shards") and gives each worker slot its own
shard, so every pool stays small; they share one TLS context.

The API key travels only in the ``Authorization`` header of API calls — never
to download or upload URLs (those are other hosts in production) and never
into a message.
"""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import anyio
import anyio.to_thread
import httpx

from .apierrors import (
    BadRequest,
    DownloadFailed,
    ResponseLost,
    from_problem,
    parse_retry_after,
    translate_transport,
)
from .wire import TaskView, parse_problem, unwrap

__all__ = ["ApiClient", "ClientPool", "Downloaded", "Secret", "Timeouts"]

WORKERS_PER_SHARD = 16
MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024
SPILL_BYTES = 1024 * 1024


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


@dataclass(frozen=True, slots=True)
class Downloaded:
    path: Path
    sha256: str
    size: int
    content_type: str


class ApiClient:
    """API calls over one shard of the pool."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, key: Secret, timeouts: Timeouts) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._auth = {"Authorization": f"Bearer {key.reveal()}", "Content-Type": "application/json"}
        self._t = timeouts

    def _url(self, path: str) -> str:
        return f"{self._base}{path}"

    async def _call(self, method: str, path: str, what: str, body: Any = None) -> Any:
        content = json.dumps(body).encode() if body is not None else None
        with translate_transport(what):
            response = await self._http.request(
                method, self._url(path), content=content, headers=self._auth,
                timeout=httpx.Timeout(self._t.request, connect=self._t.connect),
            )
        if response.status_code >= 400:
            retry = parse_retry_after(response.headers.get("retry-after")
                                      or response.headers.get("x-ratelimit-reset-after"))
            raise from_problem(parse_problem(response.status_code, response.content), retry, what)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return unwrap(json.loads(response.content))
        except ValueError:
            # A 2xx whose body is not JSON: for a submit, a task may exist.
            raise ResponseLost(f"{what}: the answer was not JSON (HTTP {response.status_code})") from None

    async def submit(self, app: str, request: Mapping[str, Any], webhook: str | None = None) -> TaskView:
        """``POST /apps/run``. See ``apierrors`` for what each failure means for money."""
        body: dict[str, Any] = {"app": app, "input": request}
        if webhook:
            body["webhook"] = webhook
        task = TaskView.parse(await self._call("POST", "/apps/run", "submit", body))
        if task is None:
            raise ResponseLost("submit: the answer holds no task id")
        return task

    async def get_task(self, task_id: str) -> TaskView:
        task = TaskView.parse(await self._call("GET", f"/tasks/{task_id}", f"task {task_id}"))
        if task is None:
            raise BadRequest(f"task {task_id}: the answer holds no task")
        return task

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
        headers = {**self._auth, "Accept": "application/x-ndjson"}
        what = f"stream {task_id}"
        task: dict[str, Any] = {}
        with translate_transport(what):
            async with self._http.stream(
                "GET", self._url(f"/tasks/{task_id}/stream"), headers=headers,
                timeout=httpx.Timeout(idle, connect=self._t.connect),
            ) as response:
                if response.status_code >= 400:
                    body = await response.aread()
                    raise from_problem(parse_problem(response.status_code, body), None, what)
                loop_time = time.monotonic
                last = loop_time()
                async for line in response.aiter_lines():
                    if not line or line.isspace():
                        continue
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue
                    if not isinstance(event, dict):
                        continue
                    if event.get("type") == "heartbeat":
                        if loop_time() - last > idle:
                            return
                        continue
                    last = loop_time()
                    if "fields" in event and isinstance(event.get("data"), dict):
                        task.update(event["data"])  # a partial update
                    elif "event" in event and "id" not in event:
                        continue  # LLM deltas and other events: not for image apps
                    else:
                        whole = event["data"] if isinstance(event.get("data"), dict) and "id" in event["data"] \
                            else event
                        task = {**task, **whole}
                    task.setdefault("id", task_id)
                    view = TaskView.parse(task)
                    if view is None:
                        continue
                    yield view
                    if view.status.terminal:
                        return

    async def upload(self, data: bytes, filename: str, content_type: str) -> str:
        """``POST /files`` then ``PUT`` the bytes to the returned upload URL; returns the file's ``uri``."""
        spec = {"files": [{"uri": "", "filename": filename, "content_type": content_type, "path": "",
                           "size": len(data), "public": False}]}
        created = await self._call("POST", "/files", f"upload {filename}", spec)
        entry = created[0] if isinstance(created, list) and created else created
        if not isinstance(entry, dict) or not entry.get("upload_url") or not entry.get("uri"):
            raise BadRequest(f"upload {filename}: the answer holds no upload_url/uri")
        with translate_transport(f"upload {filename}"):
            put = await self._http.put(str(entry["upload_url"]), content=data,
                                       headers={"Content-Type": content_type},
                                       timeout=httpx.Timeout(self._t.download, connect=self._t.connect))
        if put.status_code >= 300:
            raise from_problem(parse_problem(put.status_code, put.content), None, f"upload {filename}")
        return str(entry["uri"])

    async def download(self, uri: str, dest: Path, *, max_bytes: int = MAX_DOWNLOAD_BYTES,
                       accept: tuple[str, ...] = ("image/",),
                       finalize: Callable[[Downloaded], None] | None = None) -> Downloaded:
        """Stream ``uri`` into ``dest`` (temp file + rename), checking type and size, hashing it.

        File-system calls run in a worker thread: creating files while the manifest
        is fsync'd can block for milliseconds, which must not stall the event loop.
        ``finalize`` (e.g. writing a sidecar) runs in that same thread after the rename.
        """
        spool = _Spool(dest, f".{dest.name}.{os.getpid()}.{id(self):x}.part")
        digest = hashlib.sha256()
        size = 0
        try:
            with translate_transport(f"download {dest.name}"):
                async with self._http.stream("GET", uri, timeout=httpx.Timeout(
                        self._t.download, connect=self._t.connect)) as response:
                    if response.status_code >= 400:
                        raise DownloadFailed(f"download {dest.name}: HTTP {response.status_code}")
                    ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
                    if accept and not ctype.startswith(accept):
                        raise DownloadFailed(f"download {dest.name}: expected an image, got {ctype or 'no type'}")
                    declared = response.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > max_bytes:
                        raise DownloadFailed(f"download {dest.name}: {declared} bytes is over the {max_bytes} cap")
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            raise DownloadFailed(f"download {dest.name}: more than {max_bytes} bytes")
                        digest.update(chunk)
                        await spool.add(chunk)
            if size == 0:
                raise DownloadFailed(f"download {dest.name}: empty file")
            done = Downloaded(dest, digest.hexdigest(), size, ctype)
            await anyio.to_thread.run_sync(spool.commit, finalize, done)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(spool.discard)
            raise
        return done


class _Spool:
    """Collects a download in memory, spilling to the temp file (in a thread) past ``SPILL_BYTES``."""

    def __init__(self, dest: Path, tmp_name: str) -> None:
        self.dest = dest
        self.tmp = dest.with_name(tmp_name)
        self.buf = bytearray()
        self.fh: BinaryIO | None = None

    def _open(self) -> None:
        if self.fh is None:
            self.dest.parent.mkdir(parents=True, exist_ok=True)
            self.fh = self.tmp.open("wb")

    def _spill(self, data: bytes) -> None:
        self._open()
        assert self.fh is not None
        self.fh.write(data)

    async def add(self, chunk: bytes) -> None:
        self.buf += chunk
        if len(self.buf) >= SPILL_BYTES:
            data, self.buf = bytes(self.buf), bytearray()
            await anyio.to_thread.run_sync(self._spill, data)

    def commit(self, finalize: Callable[[Downloaded], None] | None, done: Downloaded) -> None:
        self._spill(bytes(self.buf))
        assert self.fh is not None
        self.fh.close()
        self.tmp.replace(self.dest)
        if finalize is not None:
            finalize(done)

    def discard(self) -> None:
        if self.fh is not None:
            self.fh.close()
        self.tmp.unlink(missing_ok=True)


class ClientPool:
    """Several small ``httpx.AsyncClient`` shards; worker slot ``i`` uses shard ``i % n``."""

    def __init__(self, base_url: str, key: Secret, concurrency: int, *, timeouts: Timeouts | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 workers_per_shard: int = WORKERS_PER_SHARD) -> None:
        self.timeouts = timeouts or Timeouts()
        shards = max(1, -(-concurrency // workers_per_shard))
        per_shard = -(-concurrency // shards)
        self._tls = ssl.create_default_context() if transport is None else None
        limits = httpx.Limits(max_connections=per_shard + 2, max_keepalive_connections=per_shard + 2,
                              keepalive_expiry=4.0)
        # Proxy settings from the environment apply to real endpoints, never to loopback.
        host = httpx.URL(base_url).host
        trust_env = host not in ("127.0.0.1", "localhost", "::1")
        self._clients = [
            httpx.AsyncClient(limits=limits, verify=self._tls or True, transport=transport,
                              headers={"User-Agent": "kling-pipeline"}, trust_env=trust_env)
            for _ in range(shards)
        ]
        self.apis = [ApiClient(c, base_url, key, self.timeouts) for c in self._clients]

    def api(self, slot: int) -> ApiClient:
        return self.apis[slot % len(self.apis)]

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()

    async def __aenter__(self) -> ClientPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
