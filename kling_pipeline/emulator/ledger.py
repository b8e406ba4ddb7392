"""The billing ledger: what the emulator charged, and how often each input was submitted."""

from __future__ import annotations

from typing import Any

from ..core.money import format_usd
from .tasks import Task

__all__ = ["Ledger"]


class Ledger:
    """Charges on completion only (unit price x quantity, by each app's unit); counts every
    created task per input. A charge records its quantity under the plural of the app's
    unit: ``images``, ``seconds``, ``characters``, ``runs``."""

    def __init__(self) -> None:
        self._charges: list[dict[str, Any]] = []
        self._total = 0
        self._by_app: dict[str, int] = {}
        self._submissions: dict[str, list[str]] = {}

    def submitted(self, task: Task) -> None:
        self._submissions.setdefault(task.input_sha, []).append(task.id)

    def submission_count(self, input_sha: str) -> int:
        return len(self._submissions.get(input_sha, ()))

    def charge(self, task: Task, *, quantity: int, unit: str, microcents: int, stamp: str) -> None:
        self._total += microcents
        self._by_app[task.app] = self._by_app.get(task.app, 0) + microcents
        self._charges.append(
            {
                "task_id": task.id,
                "app": task.app,
                "input": task.input,
                "input_sha256": task.input_sha,
                f"{unit}s": quantity,
                "microcents": microcents,
                "key_id": task.key_id,
                "charged_at": stamp,
            }
        )

    def snapshot(self) -> dict[str, Any]:
        return {
            "total_microcents": self._total,
            "total_usd": format_usd(self._total).removeprefix("-").removeprefix("$"),
            "by_app": dict(self._by_app),
            "charges": [dict(c) for c in self._charges],
            "submissions": [
                {"input_sha256": sha, "count": len(ids), "task_ids": list(ids)}
                for sha, ids in self._submissions.items()
            ],
        }
