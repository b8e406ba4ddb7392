"""The webhook receiver: terminal-task deliveries from the service, checked, then collected.

Deliveries are unsigned, so a body is only a hint. A run that passes a webhook
gives each job its own URL: the user's URL plus ``kp=<secret token of the
output directory>&job=<job key>``. The receiver accepts a delivery only when
the token is one the manifest recorded and the job key names exactly one job
whose task id (if known) is the delivered one; it then confirms the task with
``GET /tasks/{id}`` (following it like ``collect`` does), downloads the images
and settles the budget — taking the output directory's lock only while it
writes, so ``run --detach`` and the receiver can share a directory.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from ..api.apierrors import ApiError
from ..api.client import ClientPool
from ..core.errors import KlingError
from ..core.planning import Plan
from ..store.journal import MANIFEST_NAME, read_records
from ..store.lock import LOCK_NAME
from ..store.records import AdoptedRecord
from ..store.state import ManifestState
from .events import Events
from .options import RunOptions
from .outcome import JobResult
from .runner import run_work
from .session import OpenRun
from .work import Action

__all__ = ["MAX_BODY", "Receiver", "serve"]

MAX_BODY = 1024 * 1024
LOCK_WAIT = 60.0


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    message: str


class Receiver:
    """Checks deliveries and collects the tasks they announce (one at a time per job)."""

    def __init__(self, plan: Plan, pool: ClientPool, events: Events, *, manifest: str = MANIFEST_NAME,
                 lock: str = LOCK_NAME, options: RunOptions | None = None) -> None:
        self.plan = plan
        self.pool = pool
        self.events = events
        self.manifest = manifest
        self.manifest_path = plan.output_dir / manifest
        self.lock = lock
        self.options = options or RunOptions(concurrency=4, mode="collect")
        self._busy: set[str] = set()

    def _state(self) -> ManifestState:
        return ManifestState.replay(read_records(self.manifest_path))

    async def deliver(self, query: Mapping[str, list[str]], body: bytes) -> Answer:
        state = self._state()
        tokens = {r.webhook_token for r in state.runs if r.webhook_token}
        if (query.get("kp") or [""])[0] not in tokens:
            return Answer(403, "unknown or missing token")
        prefix = (query.get("job") or [""])[0]
        keys = [k for k in state.jobs if prefix and k.startswith(prefix)]
        if len(keys) != 1:
            return Answer(404, "unknown job")
        try:
            payload = json.loads(body)
            task_id = payload["id"] if isinstance(payload, dict) else None
        except ValueError:
            task_id = None
        if not isinstance(task_id, str) or not task_id:
            return Answer(400, "the body is not a task (JSON with an id)")
        job = state.jobs[keys[0]]
        if job.task_id is not None and job.task_id != task_id:
            return Answer(409, "that task does not belong to this job")
        if job.state == "completed":
            return Answer(200, "already collected")
        if keys[0] in self._busy:
            return Answer(202, "being collected")
        self._busy.add(keys[0])
        try:
            result = await self._collect(keys[0], task_id)
        finally:
            self._busy.discard(keys[0])
        return Answer(200, result.status)

    async def _collect(self, key: str, task_id: str) -> JobResult:
        """Take the directory (waiting for a run that holds it), then follow and settle the task."""
        async with OpenRun(self.plan, self.options, manifest=self.manifest, lock=self.lock,
                           lock_wait=LOCK_WAIT) as opened:
            job = opened.state.jobs[key]
            ctx = await opened.start(self.pool.api, self.events, run_id="webhook", record_run=False)
            if job.task_id is None:  # its submit answer was lost: the delivery says which task it made
                view = await self.pool.api.get_task(task_id)
                sent = job.intent.input if job.intent is not None else {}
                seen = view.task.get("input")
                if not isinstance(seen, dict) or any(seen.get(k) != v for k, v in sent.items()):
                    return JobResult(key, job.job_id, "unknown", error="delivered task does not match the job")
                await ctx.record(AdoptedRecord(key, task_id, "webhook"))
            work = [w for w in opened.decide().work if w.key == key]
            if not work or work[0].action not in (Action.REATTACH, Action.REDOWNLOAD):
                return JobResult(key, job.job_id, job.state, error="nothing to collect")
            result = await run_work(ctx, work[0])
            self.events.finished(work[0], result)
            return result


Handler = Callable[[Mapping[str, list[str]], bytes], Awaitable[Answer]]


def asgi_app(handler: Handler) -> Callable[..., Awaitable[None]]:
    """A framework-free ASGI app: POST only, bounded bodies, plain-text answers."""

    async def app(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                  send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            return

        async def answer(status: int, text: str) -> None:
            body = (text + "\n").encode()
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        if scope["method"] != "POST":
            await answer(405, "POST only")
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_BODY:
                await answer(413, "body too large")
                return
            if not message.get("more_body"):
                break
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        try:
            result = await handler(query, body)
        except (ApiError, KlingError) as exc:
            await answer(503, f"could not collect the task now: {exc}")
            return
        await answer(result.status, result.message)

    return app


async def serve(receiver: Receiver, host: str, port: int, ready: Callable[[str], None]) -> None:
    """Serve deliveries until Ctrl-C (uvicorn handles the signal and returns)."""
    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only then
    # (without it, answers written in two parts wait ~40 ms for the peer's delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    shown = f"[{host}]" if ":" in host else host
    config = uvicorn.Config(asgi_app(receiver.deliver), log_level="warning", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    ready(f"http://{shown}:{sock.getsockname()[1]}/")
    try:
        await server.serve(sockets=[sock])
    finally:
        sock.close()
