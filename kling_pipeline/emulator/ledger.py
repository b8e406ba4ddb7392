"""The billing ledger: what the emulator charged, and how often each input was submitted."""

from __future__ import annotations

from typing import Any

from ..core.money import format_usd
from .tasks import Task

__all__ = ["Ledger"]


class Ledger:
    """Charges on completion only (price x n); counts every created task per input."""

    def __init__(self) -> None:
        self._charges: list[dict[str, Any]] = []
        self._total = 0
        self._submissions: dict[str, list[str]] = {}

    def submitted(self, task: Task) -> None:
        self._submissions.setdefault(task.input_sha, []).append(task.id)

    def submission_count(self, input_sha: str) -> int:
        return len(self._submissions.get(input_sha, ()))

    def charge(self, task: Task, *, images: int, microcents: int, stamp: str) -> None:
        self._total += microcents
        self._charges.append(
            {
                "task_id": task.id,
                "app": task.app,
                "input": task.input,
                "input_sha256": task.input_sha,
                "images": images,
                "microcents": microcents,
                "key_id": task.key_id,
                "charged_at": stamp,
            }
        )

    def snapshot(self) -> dict[str, Any]:
        return {
            "total_microcents": self._total,
            "total_usd": format_usd(self._total).removeprefix("-").removeprefix("$"),
            "charges": [dict(c) for c in self._charges],
            "submissions": [
                {"input_sha256": sha, "count": len(ids), "task_ids": list(ids)}
                for sha, ids in self._submissions.items()
            ],
        }
