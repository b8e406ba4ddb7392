"""The emulator as a framework-free ASGI application."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

from . import routes_admin as admin
from . import routes_apps as apps
from . import routes_files as files
from . import routes_tasks as api
from .asgi import Message, Receive, Request, Route, Scope, Send, send_problem
from .config import EmulatorConfig, Faults
from .limits import LimitClass, RateLimits
from .problems import Problem
from .state import EmulatorState
from .streaming import download_file, stream_task

__all__ = ["EmulatorApp", "create_app"]

logger = logging.getLogger("kling_pipeline.emulator")

StateHandler = Callable[[EmulatorState, Request, str], Awaitable[None]]


async def _stream(st: EmulatorState, req: Request, key: str) -> None:
    await stream_task(st, req, api.owned_task(st, req, key))


def _table() -> list[tuple[str, str, StateHandler, LimitClass | None]]:
    """(method, path template, handler, rate-limit class). Every authenticated call counts
    against a class; ``None`` marks the routes without auth (signed URLs, the admin
    surface), which are not limited."""
    return [
        ("POST", "/apps/run", api.run, "runs"),
        ("GET", "/apps/{namespace}/{name}", apps.get_app, "reads"),
        ("POST", "/store/apps/{app_id}/estimate", apps.estimate, "reads"),
        ("POST", "/store/apps/{namespace}/{name}/estimate", apps.estimate, "reads"),
        ("POST", "/tasks/list", api.list_tasks, "reads"),
        ("GET", "/tasks/{task_id}", api.get_task, "reads"),
        ("DELETE", "/tasks/{task_id}", api.delete_task, "reads"),
        ("GET", "/tasks/{task_id}/status", api.get_task_status, "reads"),
        ("GET", "/tasks/{task_id}/stream", _stream, "reads"),
        ("POST", "/tasks/{task_id}/cancel", api.cancel_task, "reads"),
        ("POST", "/files", files.create_files, "uploads"),
        ("PUT", "/uploads/{file_id}", files.put_upload, None),
        ("GET", "/files/{file_id}", download_file, None),
        ("HEAD", "/files/{file_id}", download_file, None),
        ("GET", "/_emulator/ledger", admin.get_ledger, None),
        ("GET", "/_emulator/tasks", admin.get_tasks, None),
        ("GET", "/_emulator/webhooks", admin.get_webhooks, None),
        ("GET", "/_emulator/faults", admin.get_faults, None),
        ("POST", "/_emulator/faults", admin.post_faults, None),
        ("GET", "/_emulator/limits", admin.get_limits, None),
        ("POST", "/_emulator/limits", admin.post_limits, None),
        ("GET", "/_emulator/apps", apps.get_apps, None),
        ("POST", "/_emulator/apps/{namespace}/{name}", apps.edit_app, None),
    ]


def _first_segment(path: str) -> str:
    return path.split("/", 2)[1] if path.startswith("/") else ""


class EmulatorApp:
    """ASGI 3 app. All state lives in ``self.state``; nothing is shared between instances."""

    def __init__(self, cfg: EmulatorConfig) -> None:
        self.cfg = cfg
        self.state = EmulatorState(cfg)
        self._routes: dict[str, list[Route]] = {}
        for method, template, handler, limit in _table():
            route = Route.of(method, template, partial(handler, self.state), auth=limit is not None, limit=limit)
            self._routes.setdefault(_first_segment(template), []).append(route)

    # -- Python-side inspection (call on the server's event loop) --
    def ledger(self) -> dict[str, object]:
        return self.state.ledger.snapshot()

    def set_faults(self, faults: Faults) -> None:
        self.state.set_faults(faults)

    def set_limits(self, limits: RateLimits) -> None:
        self.state.limiters.set(limits)

    def edit_app(self, name: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Serve a changed app (see ``AppRegistry.edit``); the new app document. ``LookupError``
        for an app not served, ``ValueError`` for a malformed change."""
        served = self.state.apps.edit(name, changes)
        return apps.app_document(served, self.state.apps.versions(name))

    def close(self) -> None:
        """Stop timers and end every open stream (used at shutdown)."""
        self.state.engine.close()

    async def aclose(self) -> None:
        self.close()
        await self.state.webhooks.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _match(self, request: Request) -> Route:
        allowed = []
        for route in self._routes.get(_first_segment(request.path), ()):
            match = route.pattern.match(request.path)
            if match is None:
                continue
            if route.method == request.method:
                request.params = match.groupdict()
                return route
            allowed.append(route.method)
        if allowed:
            raise Problem(
                405,
                "method_not_allowed",
                "Method not allowed",
                f"{request.method} is not allowed on {request.path}",
                headers=[("allow", ", ".join(sorted(set(allowed))))],
            )
        raise Problem(404, "not_found", "Not found", f"no endpoint at {request.path}")

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False
        limit_headers: list[tuple[bytes, bytes]] = []

        async def respond(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if limit_headers:
                    message["headers"] = _merged(message["headers"], limit_headers)
            await send(message)

        request = Request(scope, receive, respond)
        try:
            route = self._match(request)
            key = ""
            if route.auth:
                key = self.state.authenticate(request.header(b"authorization"))
                # Limited after auth (an unknown caller has no budget) and before the body is
                # read, so a refused call costs the emulator nothing and creates nothing.
                decision = self.state.limiters.admit(route.limit, key) if route.limit else None
                if decision is not None:
                    limit_headers = [(k.encode(), v.encode()) for k, v in decision.headers()]
            await route.handler(request, key)
        except Problem as problem:
            if not started:
                await send_problem(respond, problem)
        except Exception:
            logger.exception("emulator bug while answering %s %s", request.method, request.path)
            if not started:
                bug = Problem(500, "internal_error", "Internal error", "the emulator failed; see its log")
                await send_problem(respond, bug)


def _merged(headers: list[tuple[bytes, bytes]], extra: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` plus those of ``extra`` it does not already name (an injected 429 says its own)."""
    named = {name for name, _ in headers}
    return [*headers, *(pair for pair in extra if pair[0] not in named)]


def create_app(cfg: EmulatorConfig | None = None) -> EmulatorApp:
    """The emulator's ASGI app for ``cfg`` (defaults: no faults, 0.5 s latency, seed 0)."""
    return EmulatorApp(cfg or EmulatorConfig())
