"""A lean HTTP/1.1 client transport, built for a few hundred concurrent tasks.

Why: httpx's default transport (httpcore) scans its whole connection pool on
every request and runs each request through several layers of anyio/h11
machinery; at 256 concurrent tasks that costs milliseconds of CPU per request.
This transport keeps, per origin, a stack of idle keep-alive connections (O(1)
to take or give back) and speaks HTTP/1.1 directly on asyncio protocols.

Two ways in: ``send()`` (plain bytes and strings, used by ``client.ApiClient``
on the hot path) and ``handle_async_request()`` (the ``httpx.AsyncBaseTransport``
interface, so httpx itself can use it too). Errors are httpx's own exception
classes (``ConnectError``, ``ReadTimeout``, ``RemoteProtocolError``...), so
``apierrors.translate_transport`` maps them as it maps httpcore's.

An idempotent request (GET/HEAD/PUT/DELETE/OPTIONS) that finds a reused
connection closed before any answer byte is retried once on a fresh connection;
a POST never is (its fate is unknown). Requires the asyncio event loop
(anyio's default backend).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from typing import cast
from urllib.parse import quote

import httpx

__all__ = ["Http11Transport", "RawResponse", "split_url"]

_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_HIGH_WATER = 1024 * 1024
_MAX_HEAD = 64 * 1024
POST_REUSE_SECONDS = 1.0
_TARGET_SAFE = "!$%&'()*+,/:;=?@[]~"
_HEX = b"0123456789abcdefABCDEF"
Origin = tuple[str, str, int]


def split_url(url: str) -> tuple[Origin, bytes, bytes]:
    """``http://host:port/path?q`` -> ((scheme, host, port), b"/path?q", b"host:port")."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("http", "https"):
        raise httpx.UnsupportedProtocol(f"unsupported URL {url[:80]!r}: only http:// and https:// are supported")
    cut = min(i for i in (rest.find("/"), rest.find("?"), rest.find("#"), len(rest)) if i >= 0)
    hostport, target = rest[:cut], rest[cut:].split("#", 1)[0]
    if target.startswith("?"):
        target = "/" + target
    if hostport.startswith("["):
        host, _, port_text = hostport[1:].partition("]")
        port_text = port_text.removeprefix(":")
    else:
        host, _, port_text = hostport.rpartition(":") if hostport.count(":") == 1 else (hostport, "", "")
    if not host:
        raise httpx.UnsupportedProtocol(f"no host in URL {url[:80]!r}")
    if port_text and not (port_text.isascii() and port_text.isdigit() and int(port_text) <= 65535):
        raise httpx.UnsupportedProtocol(f"bad port in URL {url[:80]!r}")
    if not hostport.isascii():
        raise httpx.UnsupportedProtocol(f"non-ASCII host in URL {url[:80]!r}")
    port = int(port_text) if port_text else (443 if scheme == "https" else 80)
    # spaces, controls (no CR/LF can reach the request line) and non-ASCII are percent-encoded, as httpx does
    return (scheme, host, port), quote(target or "/", safe=_TARGET_SAFE).encode("ascii"), hostport.encode("ascii")


class _Conn(asyncio.Protocol):
    """One TCP (or TLS) connection: a byte buffer fed by asyncio, read by one request at a time."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.eof = False
        self.waiter: asyncio.Future[None] | None = None
        self.paused = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) > _HIGH_WATER and self.transport is not None and not self.paused:
            self.transport.pause_reading()
            self.paused = True
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    @property
    def usable(self) -> bool:
        return not self.eof and self.transport is not None and not self.transport.is_closing() and not self.buf

    def close(self) -> None:
        self.eof = True
        if self.transport is not None:
            self.transport.close()

    async def wait(self, limit: float | None) -> None:
        """Wait for more bytes (or EOF), at most ``limit`` seconds. Raises ``TimeoutError``."""
        loop = asyncio.get_running_loop()
        self.waiter = fut = loop.create_future()
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        handle = loop.call_later(limit, _expire, fut) if limit is not None else None
        try:
            await fut
        finally:
            self.waiter = None
            if handle is not None:
                handle.cancel()

    def take(self, n: int) -> bytes:
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


class RawResponse:
    """Status, headers and a body read on demand, framed by Content-Length, chunked
    encoding, or connection close. Close it (``aclose``) to give the connection back."""

    def __init__(self, pool: Http11Transport, conn: _Conn, status: int, version: bytes, reason: bytes,
                 headers: list[tuple[bytes, bytes]], length: int | None, chunked: bool, keep_alive: bool,
                 timeout: float | None) -> None:
        self.pool, self.conn = pool, conn
        self.status, self.version, self.reason, self.headers = status, version, reason, headers
        self.length, self.chunked, self.keep_alive, self.timeout = length, chunked, keep_alive, timeout
        self.done = length == 0
        self.closed = False

    def header(self, name: str) -> str | None:
        wanted = name.lower().encode()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return None

    async def _wait(self) -> None:
        try:
            await self.conn.wait(self.timeout)
        except TimeoutError:
            raise httpx.ReadTimeout("timed out reading the response body") from None

    async def _more(self) -> None:
        if self.conn.eof:
            raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")
        await self._wait()

    async def _exactly(self, left: int) -> AsyncIterator[bytes]:
        """The next ``left`` bytes of the body, as they arrive."""
        conn = self.conn
        while left:
            if not conn.buf:
                await self._more()
                continue
            part = conn.take(min(left, len(conn.buf)))
            left -= len(part)
            yield part

    async def _line(self) -> bytes:
        while True:
            end = self.conn.buf.find(b"\r\n")
            if end >= 0:
                return self.conn.take(end + 2)[:-2]
            await self._more()

    async def aiter(self) -> AsyncIterator[bytes]:
        conn = self.conn
        if self.done:
            return
        if self.chunked:
            while True:
                size = (await self._line()).split(b";", 1)[0].strip()
                if not size or size.strip(_HEX):
                    raise httpx.RemoteProtocolError("malformed chunked encoding")
                left = int(size, 16)
                if left == 0:
                    while await self._line():  # trailers end with an empty line
                        pass
                    self.done = True
                    return
                async for part in self._exactly(left):
                    yield part
                if await self._line():
                    raise httpx.RemoteProtocolError("malformed chunked encoding")
        elif self.length is not None:
            async for part in self._exactly(self.length):
                yield part
            self.done = True
        else:  # until the server closes
            while True:
                if conn.buf:
                    yield conn.take(len(conn.buf))
                elif conn.eof:
                    self.done = True
                    return
                else:
                    await self._wait()

    async def read(self) -> bytes:
        if self.length is not None and not self.chunked and len(self.conn.buf) >= self.length:
            data = self.conn.take(self.length)  # the usual case: the whole body came with the head
            self.done = True
            return data
        return b"".join([part async for part in self.aiter()])

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.done and self.keep_alive and not self.conn.buf:
            self.pool.release(self.conn)
        else:
            self.pool.forget(self.conn)


class _HttpxBody(httpx.AsyncByteStream):
    def __init__(self, raw: RawResponse) -> None:
        self.raw = raw

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self.raw.aiter():
            yield part

    async def aclose(self) -> None:
        await self.raw.aclose()


class Http11Transport(httpx.AsyncBaseTransport):
    """Keep-alive HTTP/1.1 connections per origin, taken and returned in O(1)."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None, max_idle_per_origin: int = 512,
                 keepalive_expiry: float = 4.0) -> None:
        self._ssl = ssl_context
        self._idle: dict[Origin, list[_Conn]] = {}
        self._max_idle = max_idle_per_origin
        self._expiry = keepalive_expiry
        self._all: set[_Conn] = set()

    def release(self, conn: _Conn) -> None:
        stack = self._idle.setdefault(conn.origin, [])
        if conn.usable and len(stack) < self._max_idle:
            conn.idle_since = time.monotonic()
            stack.append(conn)
        else:
            self.forget(conn)

    def forget(self, conn: _Conn) -> None:
        conn.close()
        self._all.discard(conn)

    def _idle_conn(self, origin: Origin, max_idle: float) -> _Conn | None:
        stack = self._idle.get(origin)
        now = time.monotonic()
        while stack:
            conn = stack.pop()
            if conn.usable and now - conn.idle_since < max_idle:
                return conn
            if conn.usable and now - conn.idle_since < self._expiry:
                stack.append(conn)  # fine for a GET later; too old for a request that cannot be resent
                return None
            self.forget(conn)
        return None

    async def _connect(self, origin: Origin, limit: float | None) -> _Conn:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls = (self._ssl or ssl.create_default_context()) if scheme == "https" else None
        try:
            transport, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Conn(origin), host, port, ssl=tls,
                                       server_hostname=host if tls else None),
                limit)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}") from None
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._all.add(conn)
        return conn

    async def send(self, method: str, url: str, headers: Sequence[tuple[bytes, bytes]], body: bytes | None = None,
                   *, connect_timeout: float | None = 10.0, read_timeout: float | None = 30.0) -> RawResponse:
        """One request. ``headers`` must not hold Host or Content-Length (added here)."""
        origin, target, host = split_url(url)
        parts = [method.encode(), b" ", target, b" HTTP/1.1\r\nHost: ", host, b"\r\n"]
        for name, value in headers:
            parts += [name, b": ", value, b"\r\n"]
        if body is not None or method in ("POST", "PUT", "PATCH"):
            parts += [b"Content-Length: ", str(len(body or b"")).encode(), b"\r\n"]
        parts.append(b"\r\n")
        return await self._send(origin, method, b"".join(parts), body or b"", connect_timeout, read_timeout)

    async def _send(self, origin: Origin, method: str, head: bytes, body: bytes, connect_timeout: float | None,
                    read_timeout: float | None) -> RawResponse:
        # A request that must not be sent twice (a POST) goes only on a connection used very
        # recently: one idle longer may be closing at the server just as we write, and a POST
        # lost that way is an unknown outcome. A GET there is simply asked again.
        max_idle = self._expiry if method in _IDEMPOTENT else min(self._expiry, POST_REUSE_SECONDS)
        for fresh in (False, True):
            conn = None if fresh else self._idle_conn(origin, max_idle)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(origin, connect_timeout)
            try:
                return await self._exchange(conn, method, head, body, read_timeout)
            except _NoAnswer:
                self.forget(conn)
                if reused and method in _IDEMPOTENT:
                    continue  # a stale keep-alive connection: safe to ask again on a new one
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.") from None
            except BaseException:
                self.forget(conn)
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _exchange(self, conn: _Conn, method: str, head: bytes, body: bytes,
                        read_limit: float | None) -> RawResponse:
        assert conn.transport is not None
        if len(body) < 65536:
            conn.transport.write(head + body)
        else:
            conn.transport.write(head)
            conn.transport.write(body)
        interim = False
        while True:
            end = conn.buf.find(b"\r\n\r\n")
            if end >= 0:
                lines = conn.take(end + 4)[:-4].split(b"\r\n")
                try:
                    version, status_text, *reason = lines[0].split(b" ", 2)
                    status = int(status_text)
                except ValueError:
                    raise httpx.RemoteProtocolError(f"malformed status line {lines[0][:80]!r}") from None
                if 100 <= status < 200 and status != 101:  # 100 Continue, 103 Early Hints...: the answer follows
                    interim = True
                    continue
                break
            if len(conn.buf) > _MAX_HEAD:
                raise httpx.RemoteProtocolError("response head too large")
            if conn.eof:
                if not conn.buf and not interim:
                    raise _NoAnswer
                raise httpx.RemoteProtocolError("connection closed in the middle of the response head")
            try:
                await conn.wait(read_limit)
            except TimeoutError:
                raise httpx.ReadTimeout("timed out waiting for the response") from None
        headers: list[tuple[bytes, bytes]] = []
        length: int | None = None
        chunked = False
        keep_alive = version == b"HTTP/1.1"
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                continue
            name, value = name.strip(), value.strip()
            headers.append((name, value))
            lname = name.lower()
            if lname == b"content-length":
                if not value.isdigit():  # digits only: no sign, no list
                    raise httpx.RemoteProtocolError("malformed Content-Length")
                length = int(value)
            elif lname == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif lname == b"connection":
                v = value.lower()
                keep_alive = (keep_alive and b"close" not in v) or b"keep-alive" in v
        if method == "HEAD" or status in (204, 304, 101):
            length, chunked = 0, False
        if chunked:
            length = None
        elif length is None or status == 101:
            keep_alive = False  # the body ends when the connection does
        return RawResponse(self, conn, status, version, reason[0] if reason else b"", headers, length, chunked,
                           keep_alive, read_limit)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """The httpx transport interface, on the same connections."""
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}", request=request)
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        timeouts = request.extensions.get("timeout", {})
        body = await request.aread()
        parts = [request.method.encode(), b" ", url.raw_path or b"/", b" HTTP/1.1\r\n"]
        for name, value in request.headers.raw:
            if name.lower() in (b"transfer-encoding", b"content-length"):
                continue  # the body is read whole and sent with its length
            parts += [name, b": ", value, b"\r\n"]
        if body or request.method in ("POST", "PUT", "PATCH") or "content-length" in request.headers:
            parts += [b"Content-Length: ", str(len(body)).encode(), b"\r\n"]
        parts.append(b"\r\n")
        raw = await self._send(origin, request.method, b"".join(parts), body, timeouts.get("connect"),
                               timeouts.get("read"))
        return httpx.Response(raw.status, headers=raw.headers, stream=_HttpxBody(raw),
                              extensions={"http_version": raw.version, "reason_phrase": raw.reason})

    async def aclose(self) -> None:
        for conn in list(self._all):
            conn.close()
        self._all.clear()
        self._idle.clear()


class _NoAnswer(Exception):
    """The connection closed before any byte of the answer."""
