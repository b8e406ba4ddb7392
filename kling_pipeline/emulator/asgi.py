"""Bare ASGI plumbing: the request, JSON and problem answers, and the routing table."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from .limits import LimitClass
from .problems import Problem

__all__ = ["Receive", "Request", "Route", "Scope", "Send", "send_bytes", "send_json", "send_problem"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_TYPE = "application/json"
PROBLEM_TYPE = "application/problem+json"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class Request:
    __slots__ = ("params", "receive", "scope", "send")

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.params: dict[str, str] = {}

    @property
    def method(self) -> str:
        return str(self.scope["method"])

    @property
    def path(self) -> str:
        return str(self.scope["path"])

    def header(self, name: bytes) -> str | None:
        """The first value of a header (``name`` in lower case, as ASGI servers give it)."""
        for key, value in self.scope["headers"]:
            if key == name:
                return str(value.decode("latin-1"))
        return None

    def query(self, name: str) -> str | None:
        values = parse_qs(self.scope.get("query_string", b"").decode("latin-1")).get(name)
        return values[0] if values else None

    @property
    def netloc(self) -> str:
        host = self.header(b"host")
        if host:
            return host
        server = self.scope.get("server") or ("127.0.0.1", 80)
        return f"{server[0]}:{server[1]}"

    @property
    def base_url(self) -> str:
        return f"{self.scope.get('scheme', 'http')}://{self.netloc}"

    async def body(self, limit: int) -> bytes:
        """The whole body; 413 past ``limit`` bytes (checked before reading when declared)."""
        declared = self.header(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise Problem(413, "payload_too_large", "Body too large", f"the limit is {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise Problem(400, "invalid_request", "Client went away", "the request body was cut short")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise Problem(413, "payload_too_large", "Body too large", f"the limit is {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def json_object(self, limit: int, *, required: bool = True) -> dict[str, Any]:
        raw = await self.body(limit)
        if not raw.strip():
            if required:
                raise Problem(400, "invalid_json", "Missing body", "this endpoint needs a JSON object body")
            return {}
        try:
            value = json.loads(raw, parse_constant=_refuse_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise Problem(400, "invalid_json", "Malformed JSON", f"the body is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise Problem(400, "invalid_json", "Expected an object", "the body must be a JSON object")
        return value


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    content_type: str,
    headers: list[tuple[str, str]] | None = None,
) -> None:
    raw_headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers or []]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def encode_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


async def send_json(send: Send, value: Any, status: int = 200, headers: list[tuple[str, str]] | None = None) -> None:
    await send_bytes(send, status, encode_json(value), JSON_TYPE, headers)


async def send_problem(send: Send, problem: Problem) -> None:
    await send_bytes(send, problem.status, problem.body(), PROBLEM_TYPE, problem.headers)


Handler = Callable[[Request, str], Awaitable[None]]
"""A route handler: the request and the caller's key id ("" on routes without auth)."""


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    auth: bool = True
    limit: LimitClass | None = None
    """The rate-limit class its calls count against (authenticated routes only)."""

    @classmethod
    def of(
        cls, method: str, template: str, handler: Handler, *, auth: bool = True, limit: LimitClass | None = None
    ) -> Route:
        """``/tasks/{task_id}/stream`` -> a regex with named groups (one path segment each)."""
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
        return cls(method, re.compile(f"^{regex}$"), handler, auth, limit if auth else None)
