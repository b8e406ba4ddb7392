"""The inspection surface under ``/_emulator/`` (no auth; not part of the real API)."""

from __future__ import annotations

from .asgi import Request, send_json
from .config import faults_from_mapping
from .limits import limits_from_mapping
from .problems import Problem
from .state import EmulatorState

__all__ = ["get_faults", "get_ledger", "get_limits", "get_tasks", "get_webhooks", "post_faults", "post_limits"]


async def get_ledger(st: EmulatorState, req: Request, key: str) -> None:
    await send_json(req.send, {"data": st.ledger.snapshot()})


async def get_tasks(st: EmulatorState, req: Request, key: str) -> None:
    await send_json(req.send, {"data": st.engine.snapshot()})


async def get_webhooks(st: EmulatorState, req: Request, key: str) -> None:
    await send_json(req.send, {"data": st.webhooks.deliveries()})


async def get_faults(st: EmulatorState, req: Request, key: str) -> None:
    await send_json(req.send, {"data": st.faults_dict()})


async def post_faults(st: EmulatorState, req: Request, key: str) -> None:
    """Replace the fault settings: fields left out take their defaults."""
    body = await req.json_object(st.cfg.max_json_bytes, required=False)
    try:
        faults = faults_from_mapping(body)
    except ValueError as exc:
        raise Problem(400, "invalid_request", "Bad fault settings", str(exc)) from None
    st.set_faults(faults)
    await send_json(req.send, {"data": st.faults_dict()})


async def get_limits(st: EmulatorState, req: Request, key: str) -> None:
    await send_json(req.send, {"data": st.limits_dict()})


async def post_limits(st: EmulatorState, req: Request, key: str) -> None:
    """Change the rate limits: classes given are replaced (null turns one off), the rest kept."""
    body = await req.json_object(st.cfg.max_json_bytes, required=False)
    try:
        limits = limits_from_mapping(body, st.limiters.limits)
    except ValueError as exc:
        raise Problem(400, "invalid_request", "Bad rate limits", str(exc)) from None
    st.limiters.set(limits)
    await send_json(req.send, {"data": st.limits_dict()})
