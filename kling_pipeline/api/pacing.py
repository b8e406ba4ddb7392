"""Calls wait their turn: one queue per limit class of one API key, released by ``PaceState``.

``Pacing`` holds the three pacers the service's limits call for (``runs``, ``reads``,
``uploads``). A caller takes a ``Turn`` (``await pacer.acquire()``), sends its call,
and hands the answer back (``turn.answered(status, header)``); the turn is given back
in any case when its ``with`` block ends. Waiting calls go in order, one at a time,
each when the model of the service's limit says so — so a wait never ends in a herd.
The decisions are ``ratelimits.PaceState``'s; this module only waits and wakes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType

import anyio

from ..core.schemas import LIMIT_CLASSES, LimitClass
from .ratelimits import PaceState, RateHeaders

__all__ = ["PaceReport", "Pacer", "Pacing", "Turn", "per_minute_text"]

MAX_NAP = 30.0  # even a wait "until an answer" looks again this often


@dataclass(frozen=True, slots=True)
class PaceReport:
    """How one limit class is paced now, for the display and ``--json`` events."""

    kind: LimitClass
    paced_by_service: bool  # the service's limit, not concurrency, is what holds calls back
    per_minute: float | None  # calls released per minute lately
    throttles: int  # 429s seen so far
    limit: int | None  # the quota the service reports (X-RateLimit-Limit)


class Turn:
    """One call's turn. Use as ``with turn:``; report the answer with ``answered``."""

    __slots__ = ("_done", "_pacer", "_sequence")

    def __init__(self, pacer: Pacer, sequence: int) -> None:
        self._pacer, self._sequence, self._done = pacer, sequence, False

    def answered(self, status: int, header: Callable[[str], str | None]) -> None:
        """The call got an HTTP answer; ``header(name)`` reads its headers."""
        if not self._done:
            self._done = True
            self._pacer.answered(self._sequence, status, header)

    def abandon(self) -> None:
        """The call was not sent, or got no answer."""
        if not self._done:
            self._done = True
            self._pacer.abandoned()

    def __enter__(self) -> Turn:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.abandon()


class Pacer:
    """The queue of one limit class."""

    def __init__(self, kind: LimitClass, state: PaceState | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
                 epoch: Callable[[], float] = time.time,
                 on_change: Callable[[PaceReport], None] | None = None) -> None:
        self.kind = kind
        self.state = state or PaceState()
        self._clock, self._sleep, self._epoch = clock, sleep, epoch
        self._on_change = on_change
        self._lock = anyio.Lock()
        self._waiting = 0
        self._changed = anyio.Event()
        self._paced = False

    async def acquire(self) -> Turn:
        """Wait for this call's turn (in arrival order)."""
        self._waiting += 1
        try:
            if self._waiting > 1 or self.state.delay(self._clock(), 1) > 0:
                async with self._lock:
                    while (wait := self.state.delay(self._clock(), self._waiting)) > 0:
                        await self._nap(wait)
        finally:
            self._waiting -= 1
        turn = Turn(self, self.state.released(self._clock()))
        self._report()
        return turn

    async def _nap(self, seconds: float) -> None:
        """Sleep ``seconds`` or until an answer changes what the state knows."""
        changed = self._changed
        seconds = min(seconds, MAX_NAP)
        async with anyio.create_task_group() as tg:

            async def until_changed() -> None:
                await changed.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(until_changed)
            await self._sleep(seconds)
            tg.cancel_scope.cancel()

    def answered(self, sequence: int, status: int, header: Callable[[str], str | None]) -> None:
        headers = RateHeaders.parse(header, self._epoch())
        self.state.answered(self._clock(), sequence, headers, throttled=status == 429)
        self._wake()

    def abandoned(self) -> None:
        self.state.abandoned()
        self._wake()

    def backoff(self, retry_after: float | None, *, slower: bool = False) -> float:
        """Hold every call of this class back (a 503, a transient 500, a provider's limit, no
        connection): for ``retry_after`` when given, else an exponential, jittered delay."""
        wait = self.state.throttled(self._clock(), retry_after, slower=slower)
        self._wake()
        self._report()
        return wait

    def gate_wait(self) -> float:
        """Seconds until a gate closed by a 429 or a back-off opens (0 if open)."""
        return max(0.0, self.state.gate_until - self._clock())

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def report(self) -> PaceReport:
        now = self._clock()
        rate = self.state.accepted_rate(now)
        return PaceReport(self.kind, self.state.paced_by_service(now), None if rate is None else rate * 60.0,
                          self.state.throttles, self.state.limit)

    def _report(self) -> None:
        """Tell the listener when the service's limit starts or stops pacing this class."""
        if self._on_change is None:
            return
        paced = self.state.paced_by_service(self._clock())
        if paced != self._paced:
            self._paced = paced
            self._on_change(self.report())


class Pacing:
    """The pacers of one API key, one per limit class. ``runs_ceiling`` is the user's
    ``--rate`` (submits per second), an upper bound whatever the service allows."""

    def __init__(self, runs_ceiling: float | None = None, *,
                 on_change: Callable[[PaceReport], None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = anyio.sleep) -> None:
        def pacer(kind: LimitClass) -> Pacer:
            state = PaceState(runs_ceiling if kind == "runs" else None)
            return Pacer(kind, state, clock=clock, sleep=sleep, on_change=on_change)

        self.runs, self.reads, self.uploads = (pacer(kind) for kind in LIMIT_CLASSES)

    def __getitem__(self, kind: LimitClass) -> Pacer:
        pacer: Pacer = getattr(self, kind)
        return pacer

    def reports(self) -> list[PaceReport]:
        return [self[kind].report() for kind in LIMIT_CLASSES]


def per_minute_text(value: float | None) -> str:
    """``100 runs/min``-style rate text: whole numbers above 10, one decimal below."""
    if value is None or not math.isfinite(value):
        return "?"
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"
