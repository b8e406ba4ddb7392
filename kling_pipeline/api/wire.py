"""The inference.sh wire format, read defensively (see ../shared/api/CONTRACT.md).

Pure functions: response envelopes, task statuses (names and numbers), output
files, billing data, problem+json errors. No I/O.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

__all__ = [
    "Problem",
    "Status",
    "TaskView",
    "billed_units",
    "parse_problem",
    "parse_status",
    "unwrap",
]


class Status(Enum):
    """Task states as this tool needs them."""

    PENDING = "pending"  # received .. uploading: not finished
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"  # admission refused: never ran, not billed
    UNKNOWN = "unknown"

    @property
    def terminal(self) -> bool:
        return self in (Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.REJECTED)


# Numbering of SDK 0.36.0 (since 2026-01-10): 10 completed, 11 failed, 12 cancelled, 13 rejected.
_BY_NUMBER = {10: Status.COMPLETED, 11: Status.FAILED, 12: Status.CANCELLED, 13: Status.REJECTED}
_PENDING_NAMES = ("received", "queued", "dispatched", "preparing", "serving", "setting_up", "running",
                  "cancelling", "uploading")
_BY_NAME = {
    "completed": Status.COMPLETED, "failed": Status.FAILED, "cancelled": Status.CANCELLED,
    "canceled": Status.CANCELLED, "rejected": Status.REJECTED,
    **dict.fromkeys(_PENDING_NAMES, Status.PENDING),
}


def parse_status(raw: Any) -> Status:
    """A task status given as a number (current numbering) or a name."""
    if isinstance(raw, bool):
        return Status.UNKNOWN
    if isinstance(raw, int):
        if raw in _BY_NUMBER:
            return _BY_NUMBER[raw]
        return Status.PENDING if 1 <= raw <= 9 else Status.UNKNOWN
    if isinstance(raw, str):
        text = raw.strip().lower()
        if text.isascii() and text.isdigit():
            # int() refuses more than 4300 digits; no status has that many
            return parse_status(int(text)) if len(text) <= 20 else Status.UNKNOWN
        return _BY_NAME.get(text, Status.UNKNOWN)
    return Status.UNKNOWN


def unwrap(payload: Any) -> Any:
    """Accept ``{"data": x}``, ``{"success": true, "data": x}`` or the bare object."""
    if isinstance(payload, dict) and "data" in payload and (
        set(payload) <= {"data", "messages", "success", "meta"}
    ):
        return payload["data"]
    return payload


@dataclass(frozen=True, slots=True)
class Problem:
    """An RFC 9457 problem: HTTP status, short code (end of ``type``), and the text to show."""

    status: int
    code: str
    detail: str
    errors: tuple[Mapping[str, Any], ...] = ()


def parse_problem(status: int, body: bytes) -> Problem:
    """Read a problem+json (or any error body) without ever failing."""
    try:
        payload = json.loads(body) if body else None
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        payload = None
    if not isinstance(payload, dict):
        text = body[:300].decode("utf-8", "replace").strip() if body else ""
        return Problem(status, "", text)
    type_uri = str(payload.get("type") or payload.get("code") or "")
    code = type_uri.rstrip("/").rsplit("/", 1)[-1] if type_uri else ""
    detail = payload.get("detail") or payload.get("title") or payload.get("message") or payload.get("error") or ""
    errors = payload.get("errors")
    items = tuple(e for e in errors if isinstance(e, dict)) if isinstance(errors, list) else ()
    return Problem(status, code, str(detail)[:500], items)


def billed_units(task: Mapping[str, Any], unit: str) -> int | None:
    """Units billed according to the task's ``usage_events``; None when it carries none."""
    events = task.get("usage_events")
    if not isinstance(events, list):
        return None
    total = 0
    for event in events:
        if isinstance(event, dict) and (event.get("unit") in (unit, None) or event.get("type") == unit):
            qty = event.get("quantity")
            if (isinstance(qty, int) and not isinstance(qty, bool)) or (isinstance(qty, float) and math.isfinite(qty)):
                total += int(qty)
    return total


def _percent(value: Any) -> float | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        return float(value)
    except OverflowError:  # an int too large for a float
        return None


@dataclass(frozen=True, slots=True)
class TaskView:
    """The fields of a task this tool uses."""

    id: str
    status: Status
    raw_status: Any
    output: Any
    error: str | None
    progress: float | None
    created_at: str | None
    task: Mapping[str, Any]

    @classmethod
    def parse(cls, task: Any) -> TaskView | None:
        if not isinstance(task, dict) or not isinstance(task.get("id"), str) or not task["id"]:
            return None
        err = task.get("error")
        progress = task.get("progress")
        return cls(
            id=task["id"],
            status=parse_status(task.get("status")),
            raw_status=task.get("status"),
            output=task.get("output"),
            error=(err if isinstance(err, str) else json.dumps(err)) if err else None,
            progress=_percent(progress),
            created_at=task.get("created_at") if isinstance(task.get("created_at"), str) else None,
            task=task,
        )
