"""Webhook deliveries: a background POST per terminal task, retried a few times.

Deliveries never block the task machinery: each is its own asyncio task, kept in
a set so it is not garbage-collected, and cancelled when the emulator closes.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

__all__ = ["WebhookSender"]


class WebhookSender:
    def __init__(self, *, attempts: int, timeout: float, backoff: float = 0.2) -> None:
        self._attempts = attempts
        self._timeout = timeout
        self._backoff = backoff
        self._pending: set[asyncio.Task[None]] = set()
        self._log: list[dict[str, Any]] = []

    def send(self, url: str, payload: dict[str, Any]) -> None:
        record: dict[str, Any] = {
            "task_id": payload.get("id"),
            "status": payload.get("status"),
            "url": url,
            "attempts": 0,
            "delivered": False,
            "last_error": None,
        }
        self._log.append(record)
        body = json.dumps(payload, ensure_ascii=False).encode()
        job = asyncio.get_running_loop().create_task(self._deliver(url, body, record))
        self._pending.add(job)
        job.add_done_callback(self._pending.discard)

    async def _deliver(self, url: str, body: bytes, record: dict[str, Any]) -> None:
        headers = {"content-type": "application/json", "user-agent": "kling-pipeline-emulator/webhook"}
        async with httpx.AsyncClient(timeout=self._timeout, trust_env=False) as client:
            for attempt in range(self._attempts):
                if attempt:
                    await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
                record["attempts"] = attempt + 1
                try:
                    response = await client.post(url, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    record["last_error"] = f"{type(exc).__name__}: {exc}"
                    continue
                if response.is_success:
                    record["delivered"] = True
                    record["last_error"] = None
                    return
                record["last_error"] = f"HTTP {response.status_code}"

    def deliveries(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._log]

    async def aclose(self) -> None:
        jobs = list(self._pending)
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
