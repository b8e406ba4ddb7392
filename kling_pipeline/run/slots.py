"""Concurrency slots and the tasks being followed.

A job holds one of ``concurrency`` slots from its start until its task ends at the
service — not until its files are downloaded: the next job starts while it downloads,
unless ``concurrency`` jobs already are downloading (that bounds the files in memory).
"""

from __future__ import annotations

import anyio

__all__ = ["Inflight", "Slots"]


class Slots:
    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._held: set[str] = set()
        self.downloading: set[str] = set()

    async def acquire(self, key: str) -> None:
        """Wait for a free slot for job ``key``."""
        await self._limiter.acquire_on_behalf_of(key)
        self._held.add(key)

    def _release(self, key: str) -> None:
        if key in self._held:
            self._held.discard(key)
            self._limiter.release_on_behalf_of(key)

    def suspend(self, key: str) -> None:
        """Job ``key`` waits for something that is not a task of its own (the task listing):
        its slot goes to another job meanwhile; it ``acquire``s one again to go on."""
        self._release(key)

    def task_ended(self, key: str) -> None:
        """Job ``key``'s task has completed: its slot goes to the next job while it downloads."""
        if key in self._held and len(self.downloading) < self.concurrency:
            self.downloading.add(key)
            self._release(key)

    def job_ended(self, key: str) -> None:
        self.downloading.discard(key)
        self._release(key)


class Inflight:
    """The task ids being followed (a first Ctrl-C waits for them, or cancels them)."""

    def __init__(self) -> None:
        self.tasks: set[str] = set()
        self.changed = anyio.Event()

    def add(self, task_id: str) -> None:
        self.tasks.add(task_id)
        self._wake()

    def discard(self, task_id: str) -> None:
        self.tasks.discard(task_id)
        self._wake()

    def _wake(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()
