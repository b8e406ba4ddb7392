"""The run's work, in order — and, for a pipeline, growing as the run goes.

A downstream job can start as soon as its upstream output exists: the scheduler takes it
from here ahead of work not yet started (so chains finish before new ones begin, and a
budget stop leaves whole chains rather than many drafts). The queue is done when nothing
is left and nothing taken can add more.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import anyio

from .work import Work

__all__ = ["WorkQueue"]


class WorkQueue:
    def __init__(self, work: Iterable[Work], *, growing: bool = False) -> None:
        self._later: deque[Work] = deque(work)
        self._sooner: deque[Work] = deque()
        self._growing = growing
        self._open = 0  # work taken that may still add more (a pipeline's jobs, until they end)
        self._changed = anyio.Event()

    def add(self, work: Iterable[Work]) -> None:
        """Work that appeared during the run (a pipeline's downstream jobs): taken next."""
        self._sooner.extend(work)
        self._wake()

    def ended(self) -> None:
        """A job taken has ended (after anything it adds was added)."""
        if self._growing:
            self._open -= 1
            self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def get(self) -> Work | None:
        """The next work, or None when there is no more and none can appear."""
        while True:
            w = self._sooner.popleft() if self._sooner else self._later.popleft() if self._later else None
            if w is not None:
                if self._growing:
                    self._open += 1
                return w
            if not self._growing or self._open <= 0:
                return None
            await self._changed.wait()
