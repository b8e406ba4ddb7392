"""The API proper: run and the task endpoints (except the stream; apps and estimates are in routes_apps)."""

from __future__ import annotations

import math

from .apps import ServedApp
from .asgi import JSON_TYPE, Request, send_bytes, send_json
from .ident import input_sha256
from .images import image_problem
from .listing import ListQueryError, parse_list_query, run_list_query
from .problems import Problem
from .state import EmulatorState
from .streaming import lose_response
from .tasks import Task
from .validation import parse_run_body

__all__ = [
    "cancel_task",
    "delete_task",
    "get_task",
    "get_task_status",
    "list_tasks",
    "owned_task",
    "run",
]


def _seconds(value: float) -> str:
    return str(max(1, math.ceil(value)))


async def run(st: EmulatorState, req: Request, key: str) -> None:
    """``POST /apps/run`` (the ``runs`` limit was checked before this is called)."""
    body = await req.json_object(st.cfg.max_json_bytes)
    served, request = parse_run_body(body, st.apps.lookup, req.netloc, st.file_ready)
    sha = input_sha256(request.input)
    attempt = st.engine.next_attempt(sha)
    faults, dice = st.faults, st.dice
    if dice.chance(faults.rate_limit_rate, "rate_limit", sha, attempt):
        refusal = st.limiters.injected("runs", faults.rate_limit_retry_after)
        raise refusal.problem("rate limit exceeded (emulated fault)")
    if dice.chance(faults.server_error_rate, "server_error", sha, attempt):
        if dice.unit("server_error_kind", sha, attempt) < 0.5:
            retry = [("retry-after", _seconds(faults.server_error_retry_after))]
            raise Problem(503, "app_maintenance", "App under maintenance", "the app is paused", headers=retry)
        raise Problem(500, "entitlement_unavailable", "Entitlement unavailable", "transient error, retry")
    task = st.engine.create(
        key_id=key,
        served=served,
        request=request,
        input_sha=sha,
        attempt=attempt,
        base_url=req.base_url,
        image_check=_reference_image_problem(st, served, request.input, req.netloc),
    )
    payload = _enveloped(task)
    if dice.chance(faults.response_lost_rate, "response_lost", sha, attempt):
        await lose_response(req.send, payload)
        return
    await send_bytes(req.send, 200, payload, JSON_TYPE)


def _reference_image_problem(st: EmulatorState, served: ServedApp, value: dict[str, object], netloc: str) -> str | None:
    """What Kling would refuse in an uploaded reference image of a field with ``x-file``
    limits (the task then fails after acceptance, as Kling checks it). The emulator's own
    outputs are valid by construction: they are only drawn smaller than their nominal size
    (``image_scale``) — passed on by their URL, or downloaded and uploaded again."""
    for name, file_id, limits in served.checker.own_files(value, netloc):
        stored = st.files.get(file_id)
        if limits and stored is not None and stored.task_id is None and not st.files.is_output(stored.data or b""):
            problem = image_problem(stored.data or b"", limits)
            if problem:
                return f"{name}: {problem}"
    return None


def _enveloped(task: Task) -> bytes:
    return b'{"data":' + task.encoded() + b"}"


def owned_task(st: EmulatorState, req: Request, key: str) -> Task:
    task = st.engine.tasks.get(req.params["task_id"])
    if task is None or task.key_id != key:
        raise Problem(404, "not_found", "Task not found", f"no task {req.params['task_id']!r}")
    return task


async def get_task(st: EmulatorState, req: Request, key: str) -> None:
    await send_bytes(req.send, 200, _enveloped(owned_task(st, req, key)), JSON_TYPE)


async def get_task_status(st: EmulatorState, req: Request, key: str) -> None:
    await send_json(req.send, {"data": owned_task(st, req, key).status_dict()})


async def cancel_task(st: EmulatorState, req: Request, key: str) -> None:
    task = owned_task(st, req, key)
    options = await req.json_object(st.cfg.max_json_bytes, required=False)
    unknown = sorted(set(options) - {"force", "timeout"})
    if unknown:
        raise Problem(400, "invalid_request", "Unknown cancel options", f"unknown key(s): {', '.join(unknown)}")
    st.engine.cancel(task)
    await send_bytes(req.send, 200, _enveloped(task), JSON_TYPE)


async def delete_task(st: EmulatorState, req: Request, key: str) -> None:
    task = owned_task(st, req, key)
    st.engine.delete(task, files=(req.query("files") or "").lower() in ("1", "true", "yes"))
    await req.send({"type": "http.response.start", "status": 204, "headers": []})
    await req.send({"type": "http.response.body", "body": b"", "more_body": False})


async def list_tasks(st: EmulatorState, req: Request, key: str) -> None:
    body = await req.json_object(st.cfg.max_json_bytes, required=False)
    try:
        query = parse_list_query(body)
    except ListQueryError as exc:
        raise Problem(400, "invalid_request", "Bad listing request", str(exc)) from None
    now, lag = st.clock.now(), st.faults.index_lag
    mine = [t for t in st.engine.tasks.values() if t.key_id == key]
    data = run_list_query(query, mine, lambda t: t.created_mono + lag <= now)
    await send_json(req.send, {"data": data})
