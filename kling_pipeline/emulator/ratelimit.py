"""A per-key token bucket for ``POST /apps/run`` and the ``X-RateLimit-*`` headers it reports.

Header meanings (the contract names the headers, not their units; these follow the
IETF RateLimit draft): ``X-RateLimit-Limit`` = bucket size, ``X-RateLimit-Remaining``
= whole requests left now, ``X-RateLimit-Reset`` = seconds (rounded up) until the
bucket is full again. With no limit configured the bucket is reported as a large,
never-empty one (``UNLIMITED``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["UNLIMITED", "Decision", "RateLimiter"]

UNLIMITED = 1_000_000


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: int
    retry_after: int
    """Whole seconds (rounded up) to wait before a token is available (0 when allowed)."""
    wait: float = 0.0
    """The exact wait in seconds (0 when allowed)."""

    def headers(self) -> list[tuple[str, str]]:
        return [
            ("x-ratelimit-limit", str(self.limit)),
            ("x-ratelimit-remaining", str(self.remaining)),
            ("x-ratelimit-reset", str(self.reset)),
        ]


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class RateLimiter:
    def __init__(self, rate: float | None, burst: int | None) -> None:
        self.rate = rate
        self.capacity = (burst or max(1, math.ceil(rate))) if rate else UNLIMITED
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, now: float) -> Decision:
        """Spend one token for ``key`` if there is one."""
        if not self.rate:
            return Decision(True, UNLIMITED, UNLIMITED, 0, 0)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.capacity), now)
        bucket.tokens = min(float(self.capacity), bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        allowed = bucket.tokens >= 1.0
        if allowed:
            bucket.tokens -= 1.0
        wait = 0.0 if allowed else (1.0 - bucket.tokens) / self.rate
        retry_after = max(1, math.ceil(wait)) if wait else 0
        reset = math.ceil((self.capacity - bucket.tokens) / self.rate)
        return Decision(allowed, self.capacity, int(bucket.tokens), reset, retry_after, wait)
