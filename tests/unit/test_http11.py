"""http11: the lean HTTP/1.1 transport against tiny servers on 127.0.0.1 that write exact bytes."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from kling_pipeline.api.http11 import Http11Transport, split_url

from .conftest import Connection, TinyServer, ok, settle_loop

pytestmark = pytest.mark.anyio

Server = Callable[..., TinyServer]


class Client:
    """An ``Http11Transport`` that is always closed (with its sockets) at the end."""

    def __init__(self, **options: float | int) -> None:
        self.transport = Http11Transport(**options)  # type: ignore[arg-type]  # (test options only)

    async def __aenter__(self) -> Http11Transport:
        return self.transport

    async def __aexit__(self, *exc: object) -> None:
        await self.transport.aclose()
        await settle_loop()


async def serve_each(conn: Connection, *answers: bytes) -> None:
    """Answer the requests on this connection with ``answers`` in turn, then wait for the client's EOF."""
    for data in answers:
        if await conn.request() is None:
            return
        await conn.send(data)
    await conn.request()


async def keep_serving(conn: Connection, answer: bytes = b"") -> None:
    while await conn.request() is not None:
        await conn.send(ok(answer))


# --- framing ----------------------------------------------------------------------------------------------------

async def test_content_length_body_and_request_bytes(tiny_server: Server) -> None:
    async def handler(conn: Connection) -> None:
        await serve_each(conn, ok(b'{"ok": true}', "Content-Type: application/json", "X-Twice: a", "X-Twice: b"))

    async with tiny_server(handler) as server, Client() as http:
        response = await http.send("GET", f"{server.url}/tasks/t1?full=1#frag", [(b"X-Test", b"yes")])
        assert (response.status, response.reason, response.version) == (200, b"OK", b"HTTP/1.1")
        assert response.header("content-type") == response.header("CONTENT-TYPE") == "application/json"
        assert response.header("x-twice") == "a"
        assert response.header("x-missing") is None
        assert await response.read() == b'{"ok": true}'
        await response.aclose()
    assert server.requests[0].raw == (f"GET /tasks/t1?full=1 HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                                      "X-Test: yes\r\n\r\n").encode()


async def test_post_body_gets_a_content_length(tiny_server: Server) -> None:
    async def handler(conn: Connection) -> None:
        await serve_each(conn, ok(b"a"), ok(b"b"), ok(b"c"))

    big = bytes(range(256)) * 400  # past the size written together with the head
    async with tiny_server(handler) as server, Client() as http:
        for method, body in (("POST", b'{"app": "x"}'), ("PUT", big), ("POST", None)):
            response = await http.send(method, server.url + "/apps/run", [], body)
            await response.read()
            await response.aclose()
    assert [(r.method, r.header("content-length"), r.body) for r in server.requests] == [
        ("POST", "12", b'{"app": "x"}'), ("PUT", str(len(big)), big), ("POST", "0", b"")]
    assert len(server.connections) == 1


async def test_chunked_body_in_pieces_with_extensions_and_trailers(tiny_server: Server) -> None:
    async def handler(conn: Connection) -> None:
        await conn.request()
        await conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                        b"5\r\nhel", b"lo\r\n", b"1", b"0;ext=1\r\n", b"0123456789abcdef\r\n",
                        b"0\r\nX-Checksum: abc\r\n", b"\r\n", pause=0.005)
        await serve_each(conn, ok(b"second"))

    async with tiny_server(handler) as server, Client() as http:
        response = await http.send("GET", server.url + "/", [])
        parts = [part async for part in response.aiter()]
        assert b"".join(parts) == b"hello0123456789abcdef"
        assert len(parts) > 1
        await response.aclose()
        again = await http.send("GET", server.url + "/", [])  # the connection survived its trailers
        assert await again.read() == b"second"
        await again.aclose()
    assert len(server.connections) == 1


async def test_chunked_body_through_read(tiny_server: Server) -> None:
    async def handler(conn: Connection) -> None:
        await conn.request()
        await conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
                        b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n")
        await conn.request()

    async with tiny_server(handler) as server, Client() as http:
        response = await http.send("GET", server.url, [])
        assert await response.read() == b"abcdef"  # chunked wins over Content-Length
        await response.aclose()


async def test_body_ending_at_connection_close(tiny_server: Server) -> None:
    async def handler(conn: Connection) -> None:
        await conn.request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", b"until ", b"the end", pause=0.005)

    async with tiny_server(handler) as server, Client() as http:
        for _ in range(2):
            response = await http.send("GET", server.url, [])
            assert await response.read() == b"until the end"
            await response.aclose()
    assert len(server.connections) == 2  # such a connection cannot be reused


async def test_connection_close_is_honoured(tiny_server: Server) -> None:
    async def handler(conn: Connection) -> None:
        await serve_each(conn, ok(b"x", "Connection: close"))

    async with tiny_server(handler) as server, Client() as http:
        for _ in range(2):
            response = await http.send("GET", server.url, [])
            assert await response.read() == b"x"
            await response.aclose()
    assert [len(c.requests) for c in server.connections] == [1, 1]


async def test_http10_keep_alive(tiny_server: Server) -> None:
    async def handler(conn: Connection) -> None:
        await serve_each(conn, b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\na",
                         b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nb")

    async with tiny_server(handler) as server, Client() as http:
        for expected in (b"a", b"b", b"a"):
            response = await http.send("GET", server.url, [])
            assert await response.read() == expected
            await response.aclose()
    assert [len(c.requests) for c in server.connections] == [2, 1]  # plain HTTP/1.0 closes


@pytest.mark.parametrize(("method", "head"), [
    ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: image/png\r\n\r\n"),
    ("GET", b"HTTP/1.1 204 No Content\r\n\r\n"),
    ("GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1000\r\n\r\n"),
    ("DELETE", b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n"),
])
async def test_answers_without_bodies(tiny_server: Server, method: str, head: bytes) -> None:
    async def handler(conn: Connection) -> None:
        await serve_each(conn, head, ok(b"next"))

    async with tiny_server(handler) as server, Client() as http:
        response = await http.send(method, server.url, [])
        assert await response.read() == b""
        assert [part async for part in response.aiter()] == []
        await response.aclose()
        after = await http.send("GET", server.url, [])
        assert (after.status, await after.read()) == (200, b"next")
        await after.aclose()
    assert len(server.connections) == 1


async def test_interim_answers_are_skipped(tiny_server: Server) -> None:
    async def handler(conn: Connection) -> None:
        await serve_each(conn, b"HTTP/1.1 100 Continue\r\n\r\n" + b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                         + ok(b'{"id": "t1"}'), ok(b"next"))

    async with tiny_server(handler) as server, Client() as http:
        response = await http.send("POST", server.url + "/apps/run", [], b"{}")
        assert (response.status, await response.read()) == (200, b'{"id": "t1"}')
        await response.aclose()
        after = await http.send("GET", server.url, [])
        assert await after.read() == b"next"
        await after.aclose()
    assert len(server.connections) == 1


async def test_large_body_with_back_pressure(tiny_server: Server) -> None:
    blob = hashlib.sha256(b"seed").digest() * (3 * 1024 * 1024 // 32)  # 3 MB, past the 1 MB high-water mark

    async def handler(conn: Connection) -> None:
        await serve_each(conn, ok(blob), ok(b"after"))

    async with tiny_server(handler) as server, Client() as http:
        response = await http.send("GET", server.url, [])
        digest = hashlib.sha256()
        async for part in response.aiter():
            digest.update(part)
            await asyncio.sleep(0)
        assert digest.digest() == hashlib.sha256(blob).digest()
        await response.aclose()
        again = await http.send("GET", server.url, [])
        assert await again.read() == b"after"
        await again.aclose()
    assert len(server.connections) == 1


# --- keep-alive -------------------------------------------------------------------------------------------------

async def test_keep_alive_reuses_one_connection(tiny_server: Server) -> None:
    async with tiny_server(keep_serving) as server, Client() as http:
        for _ in range(5):
            response = await http.send("GET", server.url + "/tasks/t1", [])
            await response.read()
            await response.aclose()
    assert [len(c.requests) for c in server.connections] == [5]


async def test_concurrent_requests_use_separate_connections(tiny_server: Server) -> None:
    async with tiny_server(keep_serving) as server, Client() as http:
        first = await http.send("GET", server.url, [])
        second = await http.send("GET", server.url, [])  # the first is still open: a new connection
        for r in (first, second):
            await r.read()
            await r.aclose()
        third = await http.send("GET", server.url, [])
        await third.read()
        await third.aclose()
    assert sorted(len(c.requests) for c in server.connections) == [1, 2]


async def test_a_response_closed_half_read_costs_its_connection(tiny_server: Server) -> None:
    async def handler(conn: Connection) -> None:
        if conn.index == 0:
            await conn.request()
            await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345")
        await keep_serving(conn)

    async with tiny_server(handler) as server, Client() as http:
        response = await http.send("GET", server.url, [])
        await response.aclose()  # body not read
        again = await http.send("GET", server.url, [])
        assert again.status == 200
        await again.read()
        await again.aclose()
    assert [len(c.requests) for c in server.connections] == [1, 1]


@pytest.mark.parametrize("options", [{"keepalive_expiry": 0.0}, {"max_idle_per_origin": 0}])
async def test_no_reuse_when_idle_connections_are_not_kept(tiny_server: Server, options: dict[str, float]) -> None:
    async with tiny_server(keep_serving) as server, Client(**options) as http:
        for _ in range(3):
            response = await http.send("GET", server.url, [])
            await response.read()
            await response.aclose()
    assert [len(c.requests) for c in server.connections] == [1, 1, 1]


async def drop_the_second_request(conn: Connection) -> None:
    """Connection 0 answers one request, then reads the next and closes without a word
    (the race of a server closing an idle keep-alive connection); later ones answer all."""
    if conn.index == 0:
        await conn.request()
        await conn.send(ok(b"first"))
        await conn.request()
        return
    await keep_serving(conn, b"fresh")


async def test_stale_keep_alive_get_is_retried_once_on_a_fresh_connection(tiny_server: Server) -> None:
    async with tiny_server(drop_the_second_request) as server, Client() as http:
        for expected in (b"first", b"fresh"):
            response = await http.send("GET", server.url + "/tasks/t1", [])
            assert await response.read() == expected
            await response.aclose()
    assert [[r.method for r in c.requests] for c in server.connections] == [["GET", "GET"], ["GET"]]


async def test_stale_keep_alive_post_is_never_resent(tiny_server: Server) -> None:
    async with tiny_server(drop_the_second_request) as server, Client() as http:
        response = await http.send("GET", server.url + "/tasks/t1", [])
        await response.read()
        await response.aclose()
        with pytest.raises(httpx.RemoteProtocolError, match=r"^Server disconnected without sending a response\.$"):
            await http.send("POST", server.url + "/apps/run", [], b'{"app": "x"}')
    assert [[r.method for r in c.requests] for c in server.connections] == [["GET", "POST"]]


async def test_fresh_connection_closed_without_an_answer_is_not_retried(tiny_server: Server) -> None:
    async def handler(conn: Connection) -> None:
        await conn.request()

    async with tiny_server(handler) as server, Client() as http:
        with pytest.raises(httpx.RemoteProtocolError, match=r"^Server disconnected without sending a response\.$"):
            await http.send("GET", server.url, [])
    assert len(server.connections) == 1


async def test_aclose_closes_idle_connections(tiny_server: Server) -> None:
    eof = asyncio.Event()

    async def handler(conn: Connection) -> None:
        await conn.request()
        await conn.send(ok(b"x"))
        assert await conn.request() is None
        eof.set()

    async with tiny_server(handler) as server, Client() as http:
        response = await http.send("GET", server.url, [])
        await response.read()
        await response.aclose()
        await http.aclose()
        await asyncio.wait_for(eof.wait(), 5)


# --- failures ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n1234",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabc",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n",
])
async def test_truncated_body(tiny_server: Server, answer: bytes) -> None:
    async def handler(conn: Connection) -> None:
        await conn.request()
        await conn.send(answer)

    async with tiny_server(handler) as server, Client() as http:
        response = await http.send("GET", server.url, [])
        with pytest.raises(httpx.RemoteProtocolError,
                           match=r"^peer closed connection without sending complete message body$"):
            await response.read()
        await response.aclose()


@pytest.mark.parametrize(("answer", "message"), [
    (b"HTTP/1.1 200 OK\r\nContent-Len", "connection closed in the middle of the response head"),
    (b"SPDY/3 OK\r\n\r\n", "malformed status line b'SPDY/3 OK'"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", "malformed Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nabcdefgh", "malformed Content-Length"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70000, "response head too large"),
])
async def test_malformed_heads(tiny_server: Server, answer: bytes, message: str) -> None:
    async def handler(conn: Connection) -> None:
        await conn.request()
        await conn.send(answer)

    async with tiny_server(handler) as server, Client() as http:
        with pytest.raises(httpx.RemoteProtocolError) as info:
            await http.send("GET", server.url, [])
        assert str(info.value) == message


@pytest.mark.parametrize("body", [b"zz\r\nab\r\n0\r\n\r\n", b"-1\r\nab\r\n0\r\n\r\n", b"2\r\nabc\r\n0\r\n\r\n"])
async def test_malformed_chunks(tiny_server: Server, body: bytes) -> None:
    async def handler(conn: Connection) -> None:
        await conn.request()
        await conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
        await conn.request()

    async with tiny_server(handler) as server, Client() as http:
        response = await http.send("GET", server.url, [], read_timeout=5)
        with pytest.raises(httpx.RemoteProtocolError, match=r"^malformed chunked encoding$"):
            await response.read()
        await response.aclose()


async def test_server_that_never_answers(tiny_server: Server) -> None:
    async def handler(conn: Connection) -> None:
        await conn.request()
        await conn.request()

    async with tiny_server(handler) as server, Client() as http:
        with pytest.raises(httpx.ReadTimeout, match=r"^timed out waiting for the response$"):
            await http.send("GET", server.url, [], read_timeout=0.1)


@pytest.mark.parametrize("head", [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12",
                                  b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                                  b"HTTP/1.1 200 OK\r\n\r\nuntil close"])
async def test_body_that_stalls(tiny_server: Server, head: bytes) -> None:
    async def handler(conn: Connection) -> None:
        await conn.request()
        await conn.send(head)
        await conn.request()

    async with tiny_server(handler) as server, Client() as http:
        response = await http.send("GET", server.url, [], read_timeout=0.1)
        with pytest.raises(httpx.ReadTimeout, match=r"^timed out reading the response body$"):
            await response.read()
        await response.aclose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_connection_refused() -> None:
    port = free_port()
    async with Client() as http:
        with pytest.raises(httpx.ConnectError, match=rf"^cannot connect to 127\.0\.0\.1:{port}: "):
            await http.send("GET", f"http://127.0.0.1:{port}/", [])


async def test_bad_urls_are_refused_before_connecting() -> None:
    async with Client() as http:
        with pytest.raises(httpx.UnsupportedProtocol, match=r"^unsupported URL 'ftp://x/'"):
            await http.send("GET", "ftp://x/", [])
        with pytest.raises(httpx.UnsupportedProtocol, match=r"^bad port in URL 'http://127\.0\.0\.1:99999/'"):
            await http.send("GET", "http://127.0.0.1:99999/", [])


# --- split_url --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "origin", "target", "host"), [
    ("http://example.com", ("http", "example.com", 80), b"/", b"example.com"),
    ("https://example.com/", ("https", "example.com", 443), b"/", b"example.com"),
    ("HTTPS://api.test:8443/apps/run", ("https", "api.test", 8443), b"/apps/run", b"api.test:8443"),
    ("http://h:8080/a/b?x=1&y=%2F", ("http", "h", 8080), b"/a/b?x=1&y=%2F", b"h:8080"),
    ("http://h?x=1", ("http", "h", 80), b"/?x=1", b"h"),
    ("http://h/p?q#frag", ("http", "h", 80), b"/p?q", b"h"),
    ("http://h/p#frag?notq", ("http", "h", 80), b"/p", b"h"),
    ("http://h#frag", ("http", "h", 80), b"/", b"h"),
    ("http://h:81#frag", ("http", "h", 81), b"/", b"h:81"),
    ("http://h:/x", ("http", "h", 80), b"/x", b"h:"),
    ("http://[::1]:8080/x", ("http", "::1", 8080), b"/x", b"[::1]:8080"),
    ("http://[::1]/x", ("http", "::1", 80), b"/x", b"[::1]"),
    ("https://[2001:db8::1]?q", ("https", "2001:db8::1", 443), b"/?q", b"[2001:db8::1]"),
    ("http://127.0.0.1:65535", ("http", "127.0.0.1", 65535), b"/", b"127.0.0.1:65535"),
])
def test_split_url(url: str, origin: tuple[str, str, int], target: bytes, host: bytes) -> None:
    assert split_url(url) == (origin, target, host)


def test_split_url_quotes_non_ascii_paths() -> None:
    assert split_url("http://h/images/caf\u00e9 1.png?n=\u00e9") == (("http", "h", 80),
                                                                   b"/images/caf%C3%A9%201.png?n=%C3%A9", b"h")


@pytest.mark.parametrize(("url", "message"), [
    ("ftp://h/x", "unsupported URL 'ftp://h/x': only http:// and https:// are supported"),
    ("h/x", "unsupported URL 'h/x': only http:// and https:// are supported"),
    ("file:///etc/passwd", "unsupported URL 'file:///etc/passwd': only http:// and https:// are supported"),
    ("http:///x", "no host in URL 'http:///x'"),
    ("http://:80/x", "no host in URL 'http://:80/x'"),
    ("http://h:port/", "bad port in URL 'http://h:port/'"),
    ("http://h:99999/", "bad port in URL 'http://h:99999/'"),
    ("http://h:-1/", "bad port in URL 'http://h:-1/'"),
    ("http://[::1]x/", "bad port in URL 'http://[::1]x/'"),
])
def test_split_url_refuses(url: str, message: str) -> None:
    with pytest.raises(httpx.UnsupportedProtocol) as info:
        split_url(url)
    assert str(info.value) == message


# --- through httpx ----------------------------------------------------------------------------------------------

async def test_as_an_httpx_transport(tiny_server: Server) -> None:
    async def handler(conn: Connection) -> None:
        await serve_each(conn, ok(b'{"id": "t1"}', "Content-Type: application/json"),
                         b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
                         ok(b"streamed"))

    async def body() -> AsyncIterator[bytes]:
        yield b"part one, "
        yield b"part two"

    async with tiny_server(handler) as server, Client() as http, \
            httpx.AsyncClient(transport=http, base_url=server.url) as client:
        response = await client.post("/apps/run?x=1", json={"app": "a"}, headers={"Authorization": "Bearer k"})
        assert (response.status_code, response.json(), response.http_version) == (200, {"id": "t1"}, "HTTP/1.1")
        assert response.reason_phrase == "OK"
        chunked = await client.get("/tasks/t1")
        assert chunked.content == b"ab"
        streamed = await client.put("/files/f1", content=body())
        assert streamed.content == b"streamed"
    first, second, third = server.requests
    assert (first.method, first.target, first.body) == ("POST", "/apps/run?x=1", b'{"app":"a"}')
    assert [v for k, v in first.headers if k.lower() == "host"] == [f"127.0.0.1:{server.port}"]
    assert first.header("authorization") == "Bearer k"
    assert (second.method, second.target, second.body) == ("GET", "/tasks/t1", b"")
    assert (third.method, third.body, third.header("transfer-encoding")) == ("PUT", b"part one, part two", None)
    assert len(server.connections) == 1


async def test_httpx_errors_carry_the_request(tiny_server: Server) -> None:
    async with Client() as http, httpx.AsyncClient(transport=http) as client:
        with pytest.raises(httpx.ConnectError) as info:
            await client.get(f"http://127.0.0.1:{free_port()}/x")
        assert info.value.request.url.path == "/x"
        with pytest.raises(httpx.UnsupportedProtocol):
            await client.get("ws://127.0.0.1/x")
