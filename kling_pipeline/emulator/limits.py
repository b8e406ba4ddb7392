"""The rate limits the emulator enforces per API key: what they are, as validated values.

Three classes of call, each with its own limit (``schemas/service.json`` names them):
``runs`` (``POST /apps/run``), ``uploads`` (``POST /files``) and ``reads`` (every
other authenticated call). A limit has one of the two shapes real services use:

* ``bucket``: a token bucket refilled at ``count / period`` calls a second, holding at
  most ``burst`` calls (default: a tenth of ``count``, at least 1);
* ``window``: at most ``count`` calls in each fixed window of ``period`` seconds, the
  windows aligned on the emulator's Unix clock (a one-minute window turns at :00).

How they are enforced is ``ratelimit.py``; this module only says what they are.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from ..core.schemas import LIMIT_CLASSES, LimitClass, service_limits

__all__ = ["LIMIT_CLASSES", "Limit", "LimitClass", "RateLimits", "Shape", "limits_from_mapping", "parse_limit"]

Shape = Literal["bucket", "window"]
SHAPES: tuple[Shape, ...] = ("bucket", "window")
_UNITS = {"s": 1.0, "sec": 1.0, "min": 60.0, "h": 3600.0}
_SPEC = re.compile(r"^(?:(?P<shape>\w+):)?(?P<count>\d+)/(?P<amount>\d+(?:\.\d+)?)?(?P<unit>[a-z]+)?$")
SPEC_HELP = "COUNT/PERIOD with an optional shape, e.g. 100/min, 1000/60s, window:10/6s, bucket:5/s, or off"


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class Limit:
    """``count`` calls per ``period`` seconds, in the given shape.

    A bucket's ``burst`` is filled in when left out, so two limits that behave the
    same compare equal; a window has no burst (its burst is the whole ``count``).
    """

    count: int
    period: float = 60.0
    shape: Shape = "bucket"
    burst: int | None = None

    def __post_init__(self) -> None:
        if not _whole(self.count) or self.count < 1:
            raise ValueError(f"a limit's count must be a whole number >= 1, got {self.count!r}")
        if not isinstance(self.period, int | float) or isinstance(self.period, bool) or not (
            math.isfinite(self.period) and self.period > 0
        ):
            raise ValueError(f"a limit's period must be a number of seconds > 0, got {self.period!r}")
        if self.shape not in SHAPES:
            raise ValueError(f"a limit's shape must be 'bucket' or 'window', got {self.shape!r}")
        if self.shape == "window":
            if self.burst is not None:
                raise ValueError("a fixed window has no burst (it allows its whole count at once)")
        elif self.burst is None:
            object.__setattr__(self, "burst", max(1, self.count // 10))
        elif not _whole(self.burst) or self.burst < 1:
            raise ValueError(f"a bucket's burst must be a whole number >= 1, got {self.burst!r}")
        object.__setattr__(self, "period", float(self.period))

    @property
    def capacity(self) -> int:
        """Calls allowed at once from rest: the bucket's size, or the window's count."""
        return self.burst if self.burst is not None else self.count

    @property
    def rate(self) -> float:
        """The long-run allowed rate, in calls per second."""
        return self.count / self.period

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "period": self.period, "shape": self.shape, "burst": self.burst}

    def __str__(self) -> str:
        text = f"{self.count} per {self.period:g} s"
        return f"{text}, burst {self.burst}" if self.shape == "bucket" else f"{text}, fixed window"


@dataclass(frozen=True, slots=True)
class RateLimits:
    """One limit per class (``None``: that class is not limited), and how
    ``X-RateLimit-Reset`` is written: seconds from now, or (``reset_epoch``) the Unix
    time of the reset; the contract allows both."""

    runs: Limit | None = None
    reads: Limit | None = None
    uploads: Limit | None = None
    reset_epoch: bool = False

    def __post_init__(self) -> None:
        for kind in LIMIT_CLASSES:
            value = getattr(self, kind)
            if value is not None and not isinstance(value, Limit):
                raise TypeError(f"limits.{kind} must be a Limit or None, got {value!r}")
        if not isinstance(self.reset_epoch, bool):
            raise TypeError(f"reset_epoch must be true or false, got {self.reset_epoch!r}")

    @classmethod
    def published(cls, *, reset_epoch: bool = False) -> RateLimits:
        """The service's published limits (``schemas/service.json``), as token buckets."""
        data = service_limits()
        made = {kind: _per_minute(data.per_minute(kind), kind) for kind in LIMIT_CLASSES}
        return cls(made["runs"], made["reads"], made["uploads"], reset_epoch)

    @classmethod
    def off(cls) -> RateLimits:
        """Nothing limited (throughput benchmarks)."""
        return cls()

    def of(self, kind: LimitClass) -> Limit | None:
        limit: Limit | None = getattr(self, kind)
        return limit

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = dict.fromkeys(LIMIT_CLASSES)
        for kind in LIMIT_CLASSES:
            if (limit := self.of(kind)) is not None:
                data[kind] = limit.to_dict()
        data["reset_epoch"] = self.reset_epoch
        return data


def _per_minute(value: float, kind: str) -> Limit:
    if not value.is_integer():
        raise ValueError(f"the published {kind} limit must be a whole number of calls per minute, got {value}")
    return Limit(int(value), 60.0)


def parse_limit(text: str) -> Limit | None:
    """``[bucket:|window:]COUNT/PERIOD`` (``100/min``, ``window:10/6s``, ``5/1.5s``) or ``off``.

    PERIOD is a number of seconds, a unit (``s``, ``min``, ``h``) or both (``60s``,
    ``2min``). A bucket's burst takes its default; give another in a ``Limit``.
    """
    raw = text.strip().lower()
    if raw == "off":
        return None
    match = _SPEC.match(raw)
    if match is None or (match["amount"] is None and match["unit"] is None):
        raise ValueError(f"bad rate limit {text!r}: use {SPEC_HELP}")
    shape, unit = match["shape"] or "bucket", match["unit"] or "s"
    if shape not in SHAPES:
        raise ValueError(f"bad rate limit {text!r}: the shape is 'bucket' or 'window', not {shape!r}")
    if unit not in _UNITS:
        raise ValueError(f"bad rate limit {text!r}: the period's unit is s, min or h, not {unit!r}")
    period = float(match["amount"] or 1) * _UNITS[unit]
    try:
        return Limit(int(match["count"]), period, shape)
    except ValueError as exc:
        raise ValueError(f"bad rate limit {text!r}: {exc}") from None


def _limit_from(value: object, kind: str) -> Limit | None:
    if value is None:
        return None
    if isinstance(value, str):
        return parse_limit(value)
    if isinstance(value, Mapping):
        return _limit_from_object(value, kind)
    raise ValueError(f"{kind}: expected an object, a spec string or null, got {value!r}")


def _limit_from_object(value: Mapping[str, Any], kind: str) -> Limit:
    known = {f.name for f in fields(Limit)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ValueError(f"{kind}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    if "count" not in value:
        raise ValueError(f"{kind}: 'count' is required")
    try:
        return Limit(**value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{kind}: {exc}") from None


def limits_from_mapping(data: Mapping[str, Any], current: RateLimits) -> RateLimits:
    """``current`` changed by JSON-like ``data``: each class given is replaced (an object
    ``{"count", "period"?, "shape"?, "burst"?}``, a spec string, or null for off); those
    left out are kept. Unknown names and bad values raise ``ValueError``."""
    unknown = sorted(set(data) - {*LIMIT_CLASSES, "reset_epoch"})
    if unknown:
        raise ValueError(f"unknown limit setting(s): {', '.join(unknown)} (known: runs, reads, uploads, reset_epoch)")
    epoch = data.get("reset_epoch", current.reset_epoch)
    if not isinstance(epoch, bool):
        raise ValueError(f"reset_epoch must be true or false, got {epoch!r}")  # noqa: TRY004 - caller answers 400
    made = {kind: _limit_from(data[kind], kind) if kind in data else current.of(kind) for kind in LIMIT_CLASSES}
    return RateLimits(made["runs"], made["reads"], made["uploads"], epoch)
