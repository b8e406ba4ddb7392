"""Why a run stops submitting, and whether the service can be reached."""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio

__all__ = ["Reachability", "Stop"]


class Stop:
    """The run stops submitting (``budget``, ``fatal``, ``interrupted``); the first reason wins.
    Listeners (the budget gate, the display) hear it once."""

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.reason = ""
        self.fatal: BaseException | None = None
        self.interrupted = False
        self._listeners: list[Callable[[str, BaseException | None], None]] = []

    def is_set(self) -> bool:
        return self.event.is_set()

    def listen(self, listener: Callable[[str, BaseException | None], None]) -> None:
        self._listeners.append(listener)

    def __call__(self, reason: str, exc: BaseException | None = None) -> None:
        if self.event.is_set():
            return
        self.reason, self.fatal = reason, exc
        self.event.set()
        for listener in self._listeners:
            listener(reason, exc)


class Reachability:
    """How long submits have failed to connect (for ``--connect-grace``)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._since: float | None = None

    def unreachable_for(self) -> float:
        """Seconds since submits started failing to connect (0 on the first failure)."""
        now = self._clock()
        if self._since is None:
            self._since = now
        return now - self._since

    def reachable(self) -> None:
        self._since = None
