"""Shared submit pacing: an optional requests/second limit and a back-off gate.

One ``Pacer`` serves every worker of a run. A 429 (or a 503, or a provider
concurrency failure) closes the gate for everybody — for ``Retry-After``
seconds when the server says, else for an exponential, jittered delay that
grows with consecutive strikes and resets on success.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import anyio

__all__ = ["Pacer"]


class Pacer:
    def __init__(self, rate: float | None = None, *, base_delay: float = 1.0, max_delay: float = 60.0,
                 clock: Callable[[], float] = anyio.current_time,
                 sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
                 rng: random.Random | None = None) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._gate_until = 0.0
        self._next_slot = 0.0
        self.strikes = 0
        self.throttles = 0  # how many times the gate was closed (for reports)

    @property
    def gate_open_in(self) -> float:
        return max(0.0, self._gate_until - self._clock())

    async def wait_turn(self) -> None:
        """Wait until the gate is open and (with a rate) this caller's slot has come."""
        while True:
            now = self._clock()
            if now < self._gate_until:
                await self._sleep(self._gate_until - now)
                continue
            if self.rate is None:
                return
            slot = max(self._next_slot, now)
            self._next_slot = slot + 1.0 / self.rate
            if slot > now:
                await self._sleep(slot - now)
                if self._clock() < self._gate_until:  # closed while we slept: queue again
                    continue
            return

    def throttled(self, retry_after: float | None = None) -> float:
        """Close the gate after a 429/503/provider limit; returns the delay chosen.

        Many workers hit by the same burst count as one strike: only a throttle that
        arrives while the gate is open makes the next back-off longer."""
        if self._clock() >= self._gate_until:
            self.strikes += 1
        self.strikes = max(self.strikes, 1)
        self.throttles += 1
        if retry_after is not None:
            delay = min(retry_after, self.max_delay * 5)
        else:
            # (the exponent is bounded: 2 ** 1024 overflows a float, and a storm of 429s from
            # hundreds of workers reaches that many strikes)
            delay = min(self.max_delay, self.base_delay * 2.0 ** min(self.strikes - 1, 64))
            delay *= 0.5 + self._rng.random() / 2  # jitter: workers do not return in lockstep
        self._gate_until = max(self._gate_until, self._clock() + delay)
        return delay

    def succeeded(self) -> None:
        self.strikes = 0
