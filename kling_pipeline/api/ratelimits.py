"""When may the next call of one limit class go? A pure model of the service's rate limit.

The service counts calls per API key in classes (runs, reads, uploads) and says on
every answer what is left: ``X-RateLimit-Limit`` (the quota), ``-Remaining`` (calls
left now) and ``-Reset`` (when the quota is whole again: seconds from now, or an
epoch time). ``PaceState`` turns those answers into release times for the calls
waiting their turn, with no I/O and no clock of its own (``now`` is passed in), so
it is tested on a simulated service (``tests/unit/test_ratelimits.py``).

The rule: spend what the service says is left, **spread evenly over the time until
it resets** — unless everything waiting fits in it, which goes at once. That one rule
fits both shapes real services use. Against a fixed window it sends the window's
quota evenly and nothing more. Against a token bucket it settles with the bucket
half full, sending exactly at the refill rate: spending faster empties the bucket,
which lengthens the reset and so the spacing; spending slower does the reverse.
``Reset`` comes in whole seconds rounded up, so within one window the earliest
reset time heard is kept (each answer's is late by a different fraction).

Without headers the state falls back to AIMD on the accepted rate: halve it on a
429, add a little after each success. A 429, a 503 or a provider limit closes a
gate for ``Retry-After`` (or an exponential, jittered back-off); when the gate opens,
or the quota's reset time has passed, one call goes alone as a probe and its answer
says how to go on — there is never a herd after a wait.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["PaceState", "RateHeaders"]

EPOCH_THRESHOLD = 1e9  # an X-RateLimit-Reset above this is a Unix time, not seconds from now
MAX_WAIT = 3600.0
OVERTAKE_SECONDS = 0.3  # answers this close may have overtaken each other: a bucket's count is their lowest
REFILL_MARGIN = 0.9  # mirror a bucket a little slower than measured: the measure is noisy (whole calls, jitter)
WAIT_FOR_ANSWER = math.inf  # no release until an answer (or a timeout) says more


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None  # an HTTP date in Retry-After: rare; our own back-off applies
    return value if math.isfinite(value) and value >= 0 else None


@dataclass(frozen=True, slots=True)
class RateHeaders:
    """What one answer said about the limit (``None``: not said)."""

    limit: int | None = None
    remaining: int | None = None
    reset: float | None = None  # seconds from the answer until the quota is whole again
    retry_after: float | None = None

    @property
    def has_quota(self) -> bool:
        return self.limit is not None and self.remaining is not None and self.reset is not None

    @classmethod
    def parse(cls, header: Callable[[str], str | None], epoch_now: float) -> RateHeaders:
        """Read ``X-RateLimit-*`` and ``Retry-After`` through ``header(name)``."""
        limit, remaining = _number(header("x-ratelimit-limit")), _number(header("x-ratelimit-remaining"))
        reset = _number(header("x-ratelimit-reset"))
        if reset is not None and reset > EPOCH_THRESHOLD:
            reset = max(0.0, reset - epoch_now)
        retry = _number(header("retry-after"))
        return cls(None if limit is None or limit < 1 else int(limit), None if remaining is None else int(remaining),
                   None if reset is None else min(reset, MAX_WAIT), None if retry is None else min(retry, MAX_WAIT))


class PaceState:
    """The pacing of one limit class, as numbers. Every method takes ``now`` (seconds, monotonic)."""

    def __init__(self, ceiling: float | None = None, *, rng: random.Random | None = None,
                 base_delay: float = 1.0, max_delay: float = 60.0, min_rate: float = 0.05) -> None:
        if ceiling is not None and not ceiling > 0:
            raise ValueError("a rate ceiling must be positive")
        self.ceiling = ceiling  # the user's --rate, calls per second
        self._rng = rng or random.Random()
        self._base_delay, self._max_delay, self._min_rate = base_delay, max_delay, min_rate
        self.in_flight = 0
        self.sequence = 0  # releases so far; an answer's quota counts only if it is newer than the last heard
        self._heard = 0
        self.last_release = -math.inf
        self.gate_until = -math.inf
        self.probing = True  # nothing heard yet: one call goes first and its answer says how to go on
        # the quota, from headers
        self.limit: int | None = None
        self.remaining = 0
        self.heard_at = -math.inf
        self.reset_at = -math.inf
        self.refilling = False  # the quota grows back between resets (a token bucket), at refill_rate
        self._accepted = 0
        self._history: deque[tuple[float, int, int]] = deque(maxlen=64)  # (time, remaining, accepted so far)
        # without headers: AIMD on the accepted rate (None: no limit seen)
        self.rate: float | None = None
        self._increase = 0.0
        self.strikes = 0
        # for the display and reports
        self.throttles = 0  # 429s seen
        self.service_wait_until = -math.inf  # the service's limit (not concurrency) paced us until then
        self._releases: deque[float] = deque(maxlen=256)

    # -- when --

    def delay(self, now: float, pending: int) -> float:
        """Seconds until the first of ``pending`` waiting calls may go (0: now; ``inf``: after an answer)."""
        if now < self.gate_until:
            return self._service(now, self.gate_until - now)
        if self.probing and self.in_flight:  # our own caution (one call learns the quota), not the service's limit
            return WAIT_FOR_ANSWER
        at = now if self.ceiling is None else max(now, self.last_release + 1.0 / self.ceiling)
        service = self._quota_time(now, pending) if self.limit is not None else now
        if self.limit is None and self.rate is not None:
            service = self.last_release + 1.0 / self.rate
        if service > at:
            return self._service(now, service - now)
        return max(0.0, at - now)

    def _quota_time(self, now: float, pending: int) -> float:
        """When the quota lets the next call go: spend what is left evenly until the reset."""
        assert self.limit is not None
        refill = self._refill()
        if refill:  # a bucket: mirror it, filling at (a little under) the learned rate since the last answer
            level = self.remaining + (now - self.heard_at) * refill
            if now >= self.reset_at:
                level = max(level, self.limit)  # the service said it would be full by then
            allowance = min(self.limit, level) - self.in_flight
            # the bucket allows its burst; a big one keeps one call in hand for answers that overtook each other
            need = 2 if self.limit >= 10 else 1
            if allowance >= need:
                return now
            by_reset = self.reset_at if now < self.reset_at and self.limit - self.in_flight >= need else math.inf
            return min(now + (need - allowance) / refill, by_reset)
        if now < self.reset_at:
            allowance = self.remaining - self.in_flight
            if allowance < 1:
                return self.reset_at
            horizon = self.reset_at - now
        else:
            return now  # reset since we heard: the next call is a probe (see ``released``)
        if pending <= allowance:
            return now  # everything waiting fits in what is left
        return self.last_release + horizon / (allowance + 1)  # the last of them still lands before the reset

    def _service(self, now: float, wait: float) -> float:
        self.service_wait_until = now + min(wait, 5.0) + 5.0
        return wait

    def released(self, now: float) -> int:
        """A call leaves now; returns its sequence number (give it back with its answer)."""
        self.sequence += 1
        self.in_flight += 1
        self.last_release = now
        self._releases.append(now)
        if self.limit is not None and now >= self.reset_at and not self._refill():
            self.probing = True  # the quota has reset since we heard: learn the new one first
        return self.sequence

    def abandoned(self) -> None:
        """A released call was not sent after all (or got no answer): it no longer counts as in flight."""
        self.in_flight = max(0, self.in_flight - 1)

    # -- what the service said --

    def answered(self, now: float, sequence: int, headers: RateHeaders | None, *, throttled: bool = False) -> None:
        """The answer to call ``sequence`` came back (``throttled``: it was a 429)."""
        self.abandoned()
        self.probing = False
        if not throttled:
            self._accepted += 1
        if headers is not None and headers.has_quota and sequence > self._heard:
            self._heard = sequence  # answers can overtake each other: an older count is stale
            self._quota(now, headers)
        if throttled:
            self.throttled(now, headers.retry_after if headers else None)
            return
        self.strikes = 0
        if self.rate is not None and self.limit is None:
            self.rate += self._increase
            if self.ceiling is not None:
                self.rate = min(self.rate, self.ceiling)

    def _quota(self, now: float, h: RateHeaders) -> None:
        assert h.limit is not None and h.remaining is not None and h.reset is not None
        reset_at = now + (h.reset or 1.0)  # 0: whole now (in whole seconds, "within the second")
        if self.limit != h.limit:  # a new limit (or the first): learn its shape again
            self.refilling, self._history = False, deque(maxlen=64)
        elif not self.refilling:
            # A fixed window only comes back whole, at its reset, which calls do not move. A
            # quota that grows between resets, whose reset moves later as calls are spent, or
            # that is not whole once the reset has passed is a bucket filling continuously.
            # (The reset we keep may be up to a second late: only before that second is it surely ahead.)
            surely_before = now < self.reset_at - 1.0
            grew = h.remaining > self.remaining or reset_at > self.reset_at + 1.0
            self.refilling = (surely_before and grew) or (now >= self.reset_at and h.remaining < h.limit - 1)
        same_window = self.limit == h.limit and reset_at <= self.reset_at + 1.0
        self._history.append((now, h.remaining, self._accepted))
        remaining = h.remaining
        refill = self._refill() if self.limit == h.limit else None
        if refill:  # answers overtake each other on the way: believe the most careful of the last moment's,
            # each grown by what can have come back since and less what was spent since
            recent = [entry for entry in self._history if entry[0] >= now - OVERTAKE_SECONDS]
            remaining = min(int(r + (now - t) * refill) - (self._accepted - a) for t, r, a in recent)
        self.limit, self.remaining, self.heard_at = h.limit, remaining, now
        # whole seconds rounded up: every answer's reset is late by some fraction; within one
        # window keep the earliest (a bucket's moves with every call: keep the latest)
        self.reset_at = min(self.reset_at, reset_at) if same_window and not self.refilling else reset_at

    def _refill(self) -> float | None:
        rate = self.refill_rate() if self.refilling else None
        return None if rate is None else REFILL_MARGIN * rate

    def refill_rate(self, span: float = 3.0) -> float | None:
        """Calls per second the quota grows back, from answers at least ``span`` seconds apart:
        (calls accepted + change in what is left) / time."""
        if len(self._history) < 2:
            return None
        (t0, r0, a0), (t1, r1, a1) = self._history[0], self._history[-1]
        if t1 - t0 < span:
            return None
        rate = (a1 - a0 + r1 - r0) / (t1 - t0)
        return rate if rate > 0 else None

    def throttled(self, now: float, retry_after: float | None, *, slower: bool = True) -> float:
        """A 429 (or, with ``slower=False``, a 503 or a transient 500): close the gate; returns the wait.
        ``slower``: the answer is about our rate, so without quota headers the rate is lowered."""
        self.throttles += 1
        new_strike = now >= self.gate_until  # many calls hit by the same burst are one strike
        if new_strike:
            self.strikes += 1
            if slower and self.limit is None:  # no quota in the headers: learn the rate from what got through
                accepted = self.accepted_rate(now)
                base = min(x for x in (self.rate, accepted) if x is not None) if (self.rate or accepted) else 1.0
                self.rate = max(self._min_rate, 0.5 * base)
                self._increase = 0.01 * self.rate
        if retry_after is not None:
            wait = retry_after
        else:
            wait = min(self._max_delay, self._base_delay * 2.0 ** min(self.strikes - 1, 30))
            wait *= 0.5 + self._rng.random() / 2  # jitter: two clients of one key do not return in step
        self.gate_until = max(self.gate_until, now + wait)
        self.probing = True
        return wait

    # -- for the display --

    def accepted_rate(self, now: float, span: float = 30.0) -> float | None:
        """Calls released per second over the last ``span`` seconds (None before two releases)."""
        recent = [t for t in self._releases if t >= now - span]
        if len(recent) < 2:
            return None
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1.0)

    def paced_by_service(self, now: float) -> bool:
        """Has the service's limit (not concurrency, not ``--rate``) held calls back lately?"""
        return now < self.service_wait_until
