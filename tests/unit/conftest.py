"""Fixtures of the unit tests: the anyio backend, tiny HTTP servers on 127.0.0.1, and virtual time.

No emulator here: API behaviour is simulated with ``httpx.MockTransport`` and the
HTTP/1.1 transport is tested against servers written in the test, byte for byte.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel
import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Request:
    """One request as a tiny server read it."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """The next request on a connection (body framed by Content-Length), None at EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head[:-4].decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
    length = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
    body = await reader.readexactly(length) if length else b""
    return Request(method, target, headers, body, head + body)


Handler = Callable[["Connection"], Awaitable[None]]


@dataclass
class Connection:
    """One accepted connection: the handler reads requests and writes raw bytes."""

    index: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    requests: list[Request] = field(default_factory=list)

    async def request(self) -> Request | None:
        req = await read_request(self.reader)
        if req is not None:
            self.requests.append(req)
        return req

    async def send(self, *parts: bytes, pause: float = 0.0) -> None:
        """Write ``parts``, each flushed on its own (``pause`` seconds apart, to split TCP segments)."""
        for part in parts:
            self.writer.write(part)
            await self.writer.drain()
            if pause:
                await asyncio.sleep(pause)


class TinyServer:
    """``asyncio.start_server`` on 127.0.0.1 with one handler per connection; it records
    every connection and request, and closes everything on exit."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections: list[Connection] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[Request]:
        return [r for c in self.connections for r in c.requests]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = Connection(len(self.connections), reader, writer)
        self.connections.append(conn)
        try:
            await self.handler(conn)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, asyncio.CancelledError):
                pass
            self._tasks.discard(task)

    async def __aenter__(self) -> TinyServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            try:
                await task
            except asyncio.CancelledError:
                pass
        await self._server.wait_closed()
        await settle_loop()


async def settle_loop() -> None:
    """Let closed transports run their close callbacks (their sockets close one loop turn later)."""
    for _ in range(3):
        await anyio.lowlevel.checkpoint()


def ok(body: bytes = b"", *headers: str, status: str = "200 OK") -> bytes:
    """A Content-Length response."""
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@pytest.fixture
def tiny_server() -> Callable[[Handler], TinyServer]:
    """``async with tiny_server(handler) as server:`` — see ``TinyServer``."""
    return TinyServer


class VirtualTime:
    """A clock and a sleep for ``Pacer``: sleepers wake in deadline order, and time only
    moves when every task is blocked, so concurrent waiters are deterministic."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._seq = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        event = anyio.Event()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._seq), event))
        await event.wait()

    async def run(self, *tasks: Callable[[], Awaitable[None]]) -> None:
        """Run ``tasks`` concurrently to their end, advancing time whenever all are asleep."""
        remaining = len(tasks)

        async def one(task: Callable[[], Awaitable[None]]) -> None:
            nonlocal remaining
            try:
                await task()
            finally:
                remaining -= 1

        async with anyio.create_task_group() as tg:
            for task in tasks:
                tg.start_soon(one, task)
            while remaining:
                await anyio.wait_all_tasks_blocked()
                if not remaining:
                    break
                assert self._sleepers, "every task is blocked, but not on the virtual clock"
                deadline, _, event = heapq.heappop(self._sleepers)
                self.now = max(self.now, deadline)
                event.set()


@pytest.fixture
def vtime() -> VirtualTime:
    return VirtualTime()
