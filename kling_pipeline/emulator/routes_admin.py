"""The inspection surface under ``/_emulator/`` (no auth; not part of the real API)."""

from __future__ import annotations

from .asgi import Request, send_json
from .config import faults_from_mapping
from .problems import Problem
from .state import EmulatorState

__all__ = ["get_faults", "get_ledger", "get_tasks", "get_webhooks", "post_faults"]


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
