"""How the client sends HTTP: the ``Wire`` it needs, and httpx transports adapted to it.

``http11.Http11Transport`` is a ``Wire`` itself (the run's fast path); any httpx
transport works through ``HttpxWire`` (``httpx.MockTransport`` in unit tests,
httpx's own transport behind a proxy).
"""

from __future__ import annotations

import urllib.request
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

import httpx

__all__ = ["HttpxWire", "Response", "Wire", "closing", "proxy_for"]


class Response(Protocol):
    """What ``ApiClient`` needs of an HTTP response (``http11.RawResponse`` is one)."""

    status: int

    def header(self, name: str) -> str | None: ...
    def aiter(self) -> AsyncIterator[bytes]: ...
    async def read(self) -> bytes: ...
    async def aclose(self) -> None: ...


class Wire(Protocol):
    async def send(self, method: str, url: str, headers: Sequence[tuple[bytes, bytes]], body: bytes | None = None,
                   *, connect_timeout: float | None = ..., read_timeout: float | None = ...) -> Response: ...


class _HttpxResponse:
    def __init__(self, response: httpx.Response) -> None:
        self._r = response
        self.status = response.status_code

    def header(self, name: str) -> str | None:
        value: str | None = self._r.headers.get(name)
        return value

    def aiter(self) -> AsyncIterator[bytes]:
        return self._r.aiter_bytes()

    async def read(self) -> bytes:
        return await self._r.aread()

    async def aclose(self) -> None:
        await self._r.aclose()


class HttpxWire:
    """Any httpx transport (``httpx.MockTransport`` in unit tests, httpx's own behind a proxy)."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self.transport = transport

    async def send(self, method: str, url: str, headers: Sequence[tuple[bytes, bytes]], body: bytes | None = None,
                   *, connect_timeout: float | None = 10.0, read_timeout: float | None = 30.0) -> Response:
        timeout = {"connect": connect_timeout, "read": read_timeout, "write": read_timeout, "pool": read_timeout}
        request = httpx.Request(method, url, headers=list(headers), content=body, extensions={"timeout": timeout})
        return _HttpxResponse(await self.transport.handle_async_request(request))


def proxy_for(base_url: str) -> str | None:
    """The proxy the environment sets for ``base_url`` (never for loopback)."""
    url = httpx.URL(base_url)
    if url.host in ("127.0.0.1", "localhost", "::1"):
        return None
    proxies = urllib.request.getproxies()
    if urllib.request.proxy_bypass(url.host):
        return None
    return proxies.get(url.scheme) or proxies.get("all") or None


class closing:
    def __init__(self, response: Response) -> None:
        self.response = response

    async def __aenter__(self) -> Response:
        return self.response

    async def __aexit__(self, *exc: object) -> None:
        await self.response.aclose()
