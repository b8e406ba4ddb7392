"""The task record, its status numbers, and its wire form."""

from __future__ import annotations

import asyncio
import json
from enum import IntEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .apps import ServedApp

__all__ = ["Status", "Task"]


class Status(IntEnum):
    """Task status numbers of the API since 2026-01-10 (SDK 0.36.0 ``TaskStatus``)."""

    UNKNOWN = 0
    RECEIVED = 1
    QUEUED = 2
    DISPATCHED = 3
    PREPARING = 4
    SERVING = 5
    SETTING_UP = 6
    RUNNING = 7
    CANCELLING = 8
    UPLOADING = 9
    COMPLETED = 10
    FAILED = 11
    CANCELLED = 12
    REJECTED = 13

    @property
    def terminal(self) -> bool:
        return self >= Status.COMPLETED

    @classmethod
    def parse(cls, value: object) -> Status:
        """A status number or its lower-case name; ``ValueError`` otherwise."""
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(value)
        if isinstance(value, str) and value.upper() in cls.__members__:
            return cls[value.upper()]
        raise ValueError(f"not a task status: {value!r}")


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class Task:
    """One task. Mutated only on the event loop; every change bumps ``version`` and
    wakes the streams that follow it."""

    __slots__ = (
        "_encoded",
        "_encoded_version",
        "_fixed",
        "app",
        "app_id",
        "attempt",
        "base_url",
        "created_at",
        "created_mono",
        "error",
        "events",
        "function",
        "holds_slot",
        "id",
        "image_check",
        "input",
        "input_sha",
        "key_id",
        "outcome",
        "output",
        "progress",
        "run_seconds",
        "sample_index",
        "seq",
        "served",
        "session_id",
        "status",
        "step_index",
        "steps",
        "stream_opens",
        "t0",
        "timer",
        "updated_at",
        "usage_events",
        "version",
        "version_id",
        "waiters",
        "webhook",
    )

    def __init__(
        self,
        *,
        task_id: str,
        seq: int,
        key_id: str,
        app: str,
        app_id: str,
        version_id: str | None,
        function: str,
        input: dict[str, Any],
        input_sha: str,
        sample_index: int,
        webhook: str | None,
        session_id: str | None,
        base_url: str,
        created_mono: float,
        created_at: str,
    ) -> None:
        self.id = task_id
        self.seq = seq
        self.key_id = key_id
        self.app = app
        self.app_id = app_id
        self.version_id = version_id
        self.function = function
        self.input = input
        self.input_sha = input_sha
        self.sample_index = sample_index
        self.webhook = webhook
        self.session_id = session_id
        self.base_url = base_url
        self.created_mono = created_mono
        self.created_at = created_at
        self.updated_at = created_at
        self.status = Status.RECEIVED
        self.progress = 0
        self.output: dict[str, Any] | None = None
        self.error: str | None = None
        self.events: list[dict[str, Any]] = [{"status": int(Status.RECEIVED), "name": "received", "at": created_at}]
        self.usage_events: list[dict[str, Any]] = []
        self.version = 0
        self.timer: asyncio.TimerHandle | None = None
        self.waiters: set[asyncio.Event] = set()
        self.stream_opens = 0
        self.served: ServedApp | None = None
        """The app version that runs the task (its output plan and price)."""
        self.image_check: str | None = None
        """Why Kling would refuse the reference image (the task then fails), if it would."""
        self.attempt = 0
        self.outcome = "complete"
        self.run_seconds = 0.0
        self.holds_slot = False
        self.steps: tuple[tuple[float, str, int], ...] = ()
        self.step_index = 0
        self.t0 = 0.0
        self._encoded = b""
        self._encoded_version = -1
        self._fixed = b""

    @property
    def terminal(self) -> bool:
        return self.status.terminal

    def touch(self, stamp: str) -> None:
        """Record a change: new ``updated_at``, new version, wake the followers."""
        self.updated_at = stamp
        self.version += 1
        for event in self.waiters:
            event.set()

    def set_status(self, status: Status, stamp: str) -> None:
        if status != self.status:
            self.status = status
            self.events.append({"status": int(status), "name": status.name.lower(), "at": stamp})
        self.touch(stamp)

    def _fixed_part(self) -> dict[str, Any]:
        """The fields that never change after creation."""
        return {
            "id": self.id,
            "app": self.app,
            "app_id": self.app_id,
            "version_id": self.version_id,
            "function": self.function,
            "input": self.input,
            "webhook": self.webhook,
            "session_id": self.session_id,
            "created_at": self.created_at,
        }

    def _moving_part(self) -> dict[str, Any]:
        return {
            "status": int(self.status),
            "progress": self.progress,
            "output": self.output,
            "error": self.error,
            "logs": [],
            "events": self.events,
            "usage_events": self.usage_events,
            "updated_at": self.updated_at,
        }

    def to_dict(self) -> dict[str, Any]:
        return json.loads(self.encoded())  # type: ignore[no-any-return]

    def encoded(self) -> bytes:
        """The task as compact JSON, cached per version (streams send it often); the fixed
        fields are encoded once."""
        if self._encoded_version != self.version:
            if not self._fixed:
                self._fixed = _dumps(self._fixed_part())[:-1]
            self._encoded = self._fixed + b"," + _dumps(self._moving_part())[1:]
            self._encoded_version = self.version
        return self._encoded

    def status_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": int(self.status),
            "progress": self.progress,
            "error": self.error,
            "updated_at": self.updated_at,
        }

    def webhook_payload(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": int(self.status),
            "output": self.output,
            "error": self.error,
            "session_id": self.session_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
