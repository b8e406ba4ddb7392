"""Enforcing ``RateLimits``: one meter per (class, API key), the ``X-RateLimit-*`` headers
of each decision, and counters of calls allowed and refused.

Header meanings (the contract names the headers, not their units; these follow the
IETF RateLimit draft): ``X-RateLimit-Limit`` = the bucket's size or the window's count,
``X-RateLimit-Remaining`` = whole calls left now, ``X-RateLimit-Reset`` = seconds
(rounded up) until the bucket is full or the window turns, or that moment as a Unix
time when ``reset_epoch`` is set.

Time is Unix seconds from an injected clock (the emulator passes ``Clock.unix``, which
advances with the monotonic clock and so never jumps back): windows then turn on the
wall clock, and the epoch form of ``Reset`` is a plain addition.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .limits import LIMIT_CLASSES, Limit, LimitClass, RateLimits
from .problems import Problem

__all__ = ["ClassLimiter", "Decision", "Limiters"]

_EPSILON = 1e-9
"""Float slack: a window ending at 1700000060.0000001 still resets at 1700000060."""


def _ceil(value: float) -> int:
    return math.ceil(value - _EPSILON)


@dataclass(frozen=True, slots=True)
class Decision:
    """One call's verdict and what its answer says about the limit."""

    allowed: bool
    limit: int | None
    """``None`` only for an injected 429 while the class is not limited (no header then)."""
    remaining: int
    reset: int
    """``X-RateLimit-Reset`` as sent: whole seconds from now, or a Unix time."""
    wait: float = 0.0
    """Exact seconds until one call is allowed (0 when this one was)."""

    @property
    def retry_after(self) -> int:
        """``Retry-After``: whole seconds, rounded up, at least 1."""
        return max(1, _ceil(self.wait))

    def headers(self) -> list[tuple[str, str]]:
        pairs = [("x-ratelimit-remaining", str(self.remaining)), ("x-ratelimit-reset", str(self.reset))]
        return pairs if self.limit is None else [("x-ratelimit-limit", str(self.limit)), *pairs]

    def problem(self, detail: str) -> Problem:
        """The 429 that refuses a call: ``Retry-After``, the three headers, the exact wait."""
        headers = [("retry-after", str(self.retry_after)), *self.headers()]
        return Problem(429, "rate_limited", "Too many requests", detail, headers=headers, retry_after=self.wait)


class _Meter:
    """One key's state: a bucket's tokens and when they were counted, or a window's
    calls so far and when the window ends."""

    __slots__ = ("level", "mark")

    def __init__(self, level: float, mark: float) -> None:
        self.level = level
        self.mark = mark


def _window_end(period: float, now: float) -> float:
    return (math.floor(now / period) + 1) * period


class ClassLimiter:
    """The limit of one class of calls, for every key, with its counters."""

    __slots__ = ("_meters", "allowed", "clock", "epoch", "limit", "refused")

    def __init__(self, limit: Limit | None, clock: Callable[[], float], *, epoch: bool = False) -> None:
        self.limit = limit
        self.clock = clock
        self.epoch = epoch
        self.allowed = 0
        """Calls of this class let through (all of them while it is not limited)."""
        self.refused = 0
        """Calls answered 429 by this limit (injected 429 faults are not counted)."""
        self._meters: dict[str, _Meter] = {}

    def take(self, key: str) -> Decision | None:
        """Count one call by ``key``: ``None`` when the class is not limited, else the decision."""
        limit = self.limit
        if limit is None:  # the benchmarks' path: nothing but a count
            self.allowed += 1
            return None
        now = self.clock()
        meter = self._meters.get(key)
        if limit.shape == "bucket":
            decision = self._bucket(limit, meter, key, now)
        else:
            decision = self._window(limit, meter, key, now)
        if decision.allowed:
            self.allowed += 1
        else:
            self.refused += 1
        return decision

    def injected(self, wait: float) -> Decision:
        """The verdict an injected 429 fault reports: no calls left for ``wait`` seconds."""
        capacity = None if self.limit is None else self.limit.capacity
        return Decision(False, capacity, 0, self._reset(wait, self.clock()), wait)

    def _reset(self, seconds: float, now: float) -> int:
        return _ceil(now + seconds) if self.epoch else max(0, _ceil(seconds))

    def _bucket(self, limit: Limit, meter: _Meter | None, key: str, now: float) -> Decision:
        size, rate = limit.capacity, limit.rate
        if meter is None:
            meter = self._meters[key] = _Meter(float(size), now)
        meter.level = min(float(size), meter.level + max(0.0, now - meter.mark) * rate)
        meter.mark = now
        allowed = meter.level >= 1.0 - _EPSILON
        if allowed:
            meter.level = max(0.0, meter.level - 1.0)
        wait = 0.0 if allowed else (1.0 - meter.level) / rate
        full_in = (size - meter.level) / rate
        return Decision(allowed, size, int(meter.level + _EPSILON), self._reset(full_in, now), wait)

    def _window(self, limit: Limit, meter: _Meter | None, key: str, now: float) -> Decision:
        if meter is None or now >= meter.mark:
            meter = self._meters[key] = _Meter(0.0, _window_end(limit.period, now))
        allowed = meter.level < limit.count
        if allowed:
            meter.level += 1
        left = meter.mark - now
        remaining = max(0, int(limit.count - meter.level))  # a window shrunk at runtime may be overdrawn
        return Decision(allowed, limit.count, remaining, self._reset(left, now), 0.0 if allowed else left)

    def change(self, limit: Limit | None) -> None:
        """Switch to ``limit`` keeping each key's state where it means something: a bucket's
        tokens (counted up to now) clamped to the new size; a window's calls so far, in the
        window of the new period that holds now; across shapes, the calls left now."""
        old, self.limit = self.limit, limit
        if limit is None or old is None:
            self._meters.clear()
            return
        now = self.clock()
        for key, meter in list(self._meters.items()):
            if old.shape == "bucket":
                meter.level = min(float(old.capacity), meter.level + max(0.0, now - meter.mark) * old.rate)
                left = meter.level
            else:
                if now >= meter.mark:  # that window is over: nothing carries over
                    del self._meters[key]
                    continue
                left = old.count - meter.level
            if limit.shape == "bucket":
                self._meters[key] = _Meter(min(float(limit.capacity), left), now)
            else:
                used = meter.level if old.shape == "window" else limit.count - min(limit.count, math.floor(left))
                self._meters[key] = _Meter(float(used), _window_end(limit.period, now))


_NOUN: dict[LimitClass, str] = {"runs": "task-run", "reads": "read", "uploads": "upload"}


class Limiters:
    """The three classes' limiters of one emulator; ``set`` swaps the limits at runtime."""

    __slots__ = ("_by_class", "limits")

    def __init__(self, limits: RateLimits, clock: Callable[[], float]) -> None:
        self.limits = limits
        self._by_class = {
            kind: ClassLimiter(limits.of(kind), clock, epoch=limits.reset_epoch) for kind in LIMIT_CLASSES
        }

    def __getitem__(self, kind: LimitClass) -> ClassLimiter:
        return self._by_class[kind]

    def admit(self, kind: LimitClass, key: str) -> Decision | None:
        """Count one call of ``kind`` by ``key``; the 429 ``Problem`` is raised when it is
        refused. ``None``: the class is not limited (its answers carry no headers)."""
        decision = self._by_class[kind].take(key)
        if decision is None or decision.allowed:
            return decision
        detail = f"over the {_NOUN[kind]} rate limit for this API key ({self.limits.of(kind)}); "
        raise decision.problem(detail + f"retry in {decision.wait:.3f} s")

    def injected(self, kind: LimitClass, wait: float) -> Decision:
        return self._by_class[kind].injected(wait)

    def set(self, limits: RateLimits) -> None:
        self.limits = limits
        for kind, limiter in self._by_class.items():
            limiter.epoch = limits.reset_epoch
            if limits.of(kind) != limiter.limit:
                limiter.change(limits.of(kind))

    def stats(self) -> dict[str, dict[str, int]]:
        """Per class: calls allowed and calls refused (429) since the emulator started."""
        return {kind: {"allowed": c.allowed, "refused": c.refused} for kind, c in self._by_class.items()}
