"""A discrete-event simulation of a sweep against a rate-limited service, on virtual time.

The service counts calls in a token bucket or a fixed window and answers with
``X-RateLimit-*`` headers in whole seconds rounded up, as real services (and the
emulator) do. The client is ``ratelimits.PaceState`` driven the way ``pacing.Pacer``
drives it: one FIFO queue, the head asks ``delay``, answers wake the queue. Jobs
hold one of ``concurrency`` slots from their first submit until their task ends.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from kling_pipeline.api.ratelimits import PaceState, RateHeaders


class Bucket:
    def __init__(self, per_second: float, burst: int) -> None:
        self.rate, self.cap = per_second, burst
        self.tokens, self.stamp = float(burst), 0.0

    def take(self, now: float) -> tuple[bool, dict[str, str]]:
        self.tokens = min(self.cap, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        ok = self.tokens >= 1.0
        if ok:
            self.tokens -= 1.0
        headers = {"x-ratelimit-limit": str(self.cap), "x-ratelimit-remaining": str(int(self.tokens)),
                   "x-ratelimit-reset": str(math.ceil((self.cap - self.tokens) / self.rate))}
        if not ok:
            headers["retry-after"] = str(max(1, math.ceil((1.0 - self.tokens) / self.rate)))
        return ok, headers


class Window:
    def __init__(self, count: int, period: float) -> None:
        self.count, self.period = count, period
        self.window, self.used = 0, 0

    def take(self, now: float) -> tuple[bool, dict[str, str]]:
        window = int(now // self.period)
        if window != self.window:
            self.window, self.used = window, 0
        ok = self.used < self.count
        if ok:
            self.used += 1
        left = (window + 1) * self.period - now
        headers = {"x-ratelimit-limit": str(self.count), "x-ratelimit-remaining": str(self.count - self.used),
                   "x-ratelimit-reset": str(math.ceil(left))}
        if not ok:
            headers["retry-after"] = str(max(1, math.ceil(left)))
        return ok, headers


class Silent:
    """A bucket that answers 429 (with ``Retry-After: 1``) but never says its quota."""

    def __init__(self, per_second: float, burst: int) -> None:
        self.inner = Bucket(per_second, burst)

    def take(self, now: float) -> tuple[bool, dict[str, str]]:
        ok, _ = self.inner.take(now)
        return ok, {} if ok else {"retry-after": "1"}


@dataclass
class Outcome:
    submits: int = 0
    refused: int = 0  # 429s
    first_refusal: float | None = None
    finished: list[float] = field(default_factory=list)

    @property
    def wall(self) -> float:
        return max(self.finished)


def simulate(service: Bucket | Window | Silent, jobs: int, concurrency: int, latency: float,
             *, rtt: float = 0.004, jitter: float = 0.0, ceiling: float | None = None,
             change: tuple[float, Callable[[], Bucket | Window | Silent]] | None = None) -> Outcome:
    """Run ``jobs`` jobs (each: submit until accepted, then ``latency`` seconds of task)."""
    state = PaceState(ceiling, rng=random.Random(0))
    dice = random.Random(1)
    out = Outcome()
    clock = 0.0
    events: list[tuple[float, int, str, object]] = []
    order = itertools.count()
    queue: deque[int] = deque()  # jobs waiting for their turn, FIFO
    waiting_job: list[int] = list(range(jobs))  # not yet holding a slot
    free = concurrency
    wake_at = math.inf

    def at(when: float, kind: str, payload: object = None) -> None:
        heapq.heappush(events, (when, next(order), kind, payload))

    def start_jobs() -> None:
        nonlocal free
        while free and waiting_job:
            free -= 1
            queue.append(waiting_job.pop(0))

    def pump() -> None:
        """Release the head of the queue while its delay is 0; schedule a wake otherwise."""
        nonlocal wake_at
        while queue:
            wait = state.delay(clock, len(queue))
            if wait > 0:
                if math.isfinite(wait) and clock + wait < wake_at:
                    wake_at = clock + wait
                    at(wake_at, "wake")
                return
            job = queue.popleft()
            seq = state.released(clock)
            at(clock + rtt / 2 + dice.random() * jitter, "arrive", (job, seq))

    start_jobs()
    pump()
    while events:
        clock, _, kind, payload = heapq.heappop(events)
        if change is not None and clock >= change[0]:
            service = change[1]()
            change = None
        if kind == "wake":
            if clock >= wake_at:
                wake_at = math.inf
        elif kind == "arrive":
            job, seq = payload  # type: ignore[misc]
            ok, headers = service.take(clock)
            out.submits += 1
            if not ok:
                out.refused += 1
                if out.first_refusal is None:
                    out.first_refusal = clock
            at(clock + rtt / 2 + dice.random() * jitter, "answer", (job, seq, ok, headers))
        elif kind == "answer":
            job, seq, ok, headers = payload  # type: ignore[misc]
            parsed = RateHeaders.parse(headers.get, 0.0)
            state.answered(clock, seq, parsed, throttled=not ok)
            if ok:
                at(clock + latency, "done", job)
            else:
                queue.appendleft(job)  # its turn again, first in line
        elif kind == "done":
            out.finished.append(clock)
            free += 1
            start_jobs()
        pump()
    assert len(out.finished) == jobs
    return out
