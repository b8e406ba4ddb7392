"""Emulator settings: the latency model, the fault knobs and the whole configuration.

All three are frozen dataclasses (the rate limits are in ``limits.py``); the running
emulator swaps a whole ``Faults`` or ``RateLimits`` value at runtime
(``EmulatorServer.set_faults`` / ``set_limits``) rather than mutating one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Literal

from .limits import RateLimits

__all__ = ["EmulatorConfig", "Faults", "Latency", "faults_from_mapping"]

_STANDARD_NORMAL = NormalDist()
LatencyKind = Literal["fixed", "uniform", "lognormal"]


@dataclass(frozen=True, slots=True)
class Latency:
    """How long a task runs once admitted, in seconds.

    ``fixed(s)``; ``uniform(a, b)``; ``lognormal(median, sigma)`` (the log of the
    duration is normal with mean ``ln(median)`` and standard deviation ``sigma``).
    Samples are drawn from a number in [0, 1) that the caller derives from a hash,
    so the same task gets the same latency whatever the arrival order.
    """

    kind: LatencyKind
    a: float
    b: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.a) and math.isfinite(self.b)):
            raise ValueError("latency values must be finite")
        if self.kind == "fixed" and self.a < 0:
            raise ValueError(f"latency must be >= 0 seconds, got {self.a}")
        if self.kind == "uniform" and not 0 <= self.a <= self.b:
            raise ValueError(f"uniform latency needs 0 <= low <= high, got {self.a}..{self.b}")
        if self.kind == "lognormal" and (self.a <= 0 or self.b < 0):
            raise ValueError(f"lognormal latency needs median > 0 and sigma >= 0, got {self.a},{self.b}")

    @classmethod
    def fixed(cls, seconds: float) -> Latency:
        return cls("fixed", float(seconds))

    @classmethod
    def uniform(cls, low: float, high: float) -> Latency:
        return cls("uniform", float(low), float(high))

    @classmethod
    def lognormal(cls, median: float, sigma: float) -> Latency:
        return cls("lognormal", float(median), float(sigma))

    @classmethod
    def parse(cls, text: str) -> Latency:
        """``"1.0"`` (fixed), ``"0.5..2"`` (uniform) or ``"lognormal:1.0,0.3"`` (median, sigma)."""
        raw = text.strip()
        try:
            if raw.startswith("lognormal:"):
                median, _, sigma = raw.removeprefix("lognormal:").partition(",")
                return cls.lognormal(float(median), float(sigma))
            if ".." in raw:
                low, _, high = raw.partition("..")
                return cls.uniform(float(low), float(high))
            return cls.fixed(float(raw))
        except ValueError as exc:
            raise ValueError(
                f"bad latency {text!r} ({exc}); use SECONDS, LOW..HIGH or lognormal:MEDIAN,SIGMA"
            ) from None

    def sample(self, u: float) -> float:
        """The latency at quantile ``u`` (0 <= u < 1) of the distribution."""
        if self.kind == "fixed":
            return self.a
        if self.kind == "uniform":
            return self.a + (self.b - self.a) * u
        q = min(max(u, 1e-12), 1 - 1e-12)
        return self.a * math.exp(self.b * _STANDARD_NORMAL.inv_cdf(q))

    def __str__(self) -> str:
        if self.kind == "fixed":
            return f"{self.a:g}"
        if self.kind == "uniform":
            return f"{self.a:g}..{self.b:g}"
        return f"lognormal:{self.a:g},{self.b:g}"


@dataclass(frozen=True, slots=True)
class Faults:
    """Injected misbehaviour. Rates are probabilities in [0, 1]; each decision is a
    hash of (seed, input, per-input attempt number, kind), not a shared RNG."""

    task_failure_rate: float = 0.0
    """A task fails mid-run (status 11) with an error; not billed."""
    provider_limit_rate: float = 0.0
    """A task fails early with Kling's code 1303 (concurrency/rate limit); not billed."""
    reject_rate: float = 0.0
    """A task is created already ended (status 13, rejected); not billed."""
    rate_limit_rate: float = 0.0
    """``POST /apps/run`` answers 429 ``rate_limited`` and creates no task (an injected
    fault, on top of the enforced ``EmulatorConfig.limits``)."""
    rate_limit_retry_after: float = 1.0
    """The ``Retry-After`` (seconds, rounded up) of an injected 429."""
    server_error_rate: float = 0.0
    """``POST /apps/run`` answers 503 ``app_maintenance`` or 500 and creates no task."""
    server_error_retry_after: float = 1.0
    """The ``Retry-After`` (seconds, rounded up) of an injected 503."""
    max_running_per_key: int | None = None
    """At most this many tasks per API key run at once; the rest wait in status 2."""
    stream_cut_rate: float = 0.0
    """A task stream is closed abruptly before its terminal line."""
    download_bytes_per_second: int | None = None
    """Throttle file downloads to this rate."""
    response_lost_rate: float = 0.0
    """``POST /apps/run`` creates the task but the connection dies mid-response."""
    index_lag: float = 0.0
    """Seconds after creation before a task shows up in ``POST /tasks/list``."""
    short_list_rate: float = 0.0
    """A completed task's list output (e.g. ``images``) holds one item fewer than it was
    billed for, as when a provider's safety filter drops one."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_rate") and not (
                isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 1.0
            ):
                raise ValueError(f"{f.name} must be a probability between 0 and 1, got {value!r}")
        for name in ("rate_limit_retry_after", "server_error_retry_after", "index_lag"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
        _positive_or_none(self.max_running_per_key, "max_running_per_key")
        _positive_or_none(self.download_bytes_per_second, "download_bytes_per_second")


def _positive_or_none(value: object, name: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise ValueError(f"{name} must be an integer > 0 or null, got {value!r}")


FAULT_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Faults))


def faults_from_mapping(data: Mapping[str, Any]) -> Faults:
    """Build ``Faults`` from JSON-like data; unknown names and bad values raise ``ValueError``."""
    unknown = sorted(set(data) - set(FAULT_FIELDS))
    if unknown:
        raise ValueError(f"unknown fault setting(s): {', '.join(unknown)} (known: {', '.join(FAULT_FIELDS)})")
    try:
        return Faults(**data)
    except TypeError as exc:
        raise ValueError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """Everything that shapes the emulator's behaviour (not where it listens)."""

    latency: Latency = field(default_factory=lambda: Latency.fixed(0.5))
    app: str = "klingai/image-o1"
    """The first-class app: always served, listed first."""
    apps: tuple[str, ...] | None = None
    """The other bundled apps (from ``schemas/``) served beside ``app``; None: every one."""
    seed: int = 0
    api_key: str | None = field(default=None, repr=False)
    """When set, only this bearer key is accepted; otherwise any non-empty key is."""
    faults: Faults = field(default_factory=Faults)
    limits: RateLimits = field(default_factory=RateLimits.published)
    """Per-key rate limits, enforced with 429s; by default the service's published ones."""
    image_scale: int = 8
    """Output PNGs are the contract's pixel size divided by this (rounded, at least 1 px)."""
    heartbeat_interval: float = 10.0
    """Seconds of silence on a task stream before a ``{"type": "heartbeat"}`` line."""
    progress_steps: int = 4
    """Progress updates while a task runs (0, 25, 50, 75 with 4 steps)."""
    min_progress_interval: float = 1.0
    """Lower bound on the gap between progress updates: a task shorter than this shows no
    intermediate progress (real services do not report progress several times a second)."""
    max_progress_interval: float = 10.0
    """Upper bound on the gap between progress updates, so long tasks still show life."""
    max_upload_bytes: int = 20 * 1024 * 1024
    max_json_bytes: int = 1024 * 1024
    webhook_attempts: int = 4
    webhook_timeout: float = 5.0
    webhook_backoff: float = 0.2
    """Wait before the first webhook retry; doubled for each further one."""

    def __post_init__(self) -> None:
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("api_key must be non-empty when given")
        if self.image_scale < 1:
            raise ValueError(f"image_scale must be >= 1, got {self.image_scale}")
        if self.heartbeat_interval <= 0 or not 0 <= self.min_progress_interval <= self.max_progress_interval:
            raise ValueError("need heartbeat_interval > 0 and 0 <= min_progress_interval <= max_progress_interval")
        if self.progress_steps < 1:
            raise ValueError(f"progress_steps must be >= 1, got {self.progress_steps}")
        if self.max_upload_bytes < 1 or self.max_json_bytes < 1 or self.webhook_attempts < 1:
            raise ValueError("max_upload_bytes, max_json_bytes and webhook_attempts must be >= 1")
