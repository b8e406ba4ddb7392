"""Errors from talking to the API, and the one place transport/HTTP failures become them.

What matters for money is whether a failed ``POST /apps/run`` may have created
a task. Each class says so through ``created``:

* ``False`` — provably nothing was created (connection never made, 429, 503,
  a 4xx answer): safe to retry or to release the reservation;
* ``None`` — unknown (timeout or reset after the body was sent, other 5xx):
  never re-send blindly; reconcile or report.

Messages never contain the API key (it only ever travels in a header, and no
header is ever put in a message).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..core.errors import KlingError
from .wire import Problem

if TYPE_CHECKING:  # the HTTP client is imported when a request is made, not by every command
    import httpx

__all__ = [
    "ApiError",
    "AppGone",
    "AuthFailed",
    "BadRequest",
    "ConnectFailed",
    "DownloadFailed",
    "NotFound",
    "PaymentRequired",
    "RateLimited",
    "RequirementsNotMet",
    "ResponseLost",
    "ServerError",
    "TransportError",
    "Unavailable",
    "Unreachable",
    "from_problem",
    "is_provider_limit",
    "translate_transport",
]

PROVIDER_LIMIT_MARKERS = ("1303", "concurrency limit", "rate limit", "too many requests")
"""How a provider's own concurrency limit shows in a failed task's error text (Kling code 1303):
there is no code field for it, only the text the provider wrote."""


def is_provider_limit(error: str | None) -> bool:
    """Did the task fail on the provider's concurrency/rate limit (retryable, not billed)?"""
    text = (error or "").lower()
    return any(marker in text for marker in PROVIDER_LIMIT_MARKERS)


class ApiError(KlingError):
    """The API answered with an error, or could not be reached."""

    created: bool | None = False  # may this failure have created a task?
    fatal: bool = False  # stop submitting anything else
    retryable: bool = False  # safe to send the same request again

    def __init__(self, message: str, *, status: int | None = None, code: str = "",
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after = retry_after


class AuthFailed(ApiError):
    invalid = True
    fatal = True


class PaymentRequired(ApiError):
    fatal = True


class RequirementsNotMet(ApiError):
    fatal = True


class AppGone(ApiError):
    invalid = True
    fatal = True


class NotFound(ApiError):
    pass


class BadRequest(ApiError):
    """The input was refused (400/422/409...): no task was created."""


class RateLimited(ApiError):
    retryable = True


class Unavailable(ApiError):
    """503 or 500 ``entitlement_unavailable``: documented as 'no task created, retry'."""

    retryable = True


class ServerError(ApiError):
    """Another 5xx: a task may or may not exist."""

    created = None


class TransportError(ApiError):
    """No (complete) HTTP answer."""


class ConnectFailed(TransportError):
    """The request never left: connection refused, DNS, connect timeout, no free connection."""

    retryable = True


class ResponseLost(TransportError):
    """The request was (maybe) sent but no complete answer came back."""

    created = None


class Unreachable(ApiError):
    """The API could not be reached for longer than the run allows (``--connect-grace``)."""

    fatal = True


class DownloadFailed(KlingError):
    """An output file could not be fetched or failed a check. ``permanent``: fetching it
    again cannot help (it is too big, or not of the kind the app's output schema says)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def from_problem(problem: Problem, retry_after: float | None, what: str) -> ApiError:
    """Map an HTTP error answer to its class. ``what`` names the call, e.g. 'submit'."""
    s, code = problem.status, problem.code
    detail = problem.detail or f"HTTP {s}"
    text = f"{what}: {detail} (HTTP {s}{', ' + code if code else ''})"
    kw: dict[str, Any] = {"status": s, "code": code, "retry_after": retry_after}
    if s in {401, 403}:
        return AuthFailed(f"{what}: the API key was refused (HTTP {s}); check INFERENCE_API_KEY", **kw)
    if s == 402:
        return PaymentRequired(f"{text} — add balance or raise the plan limit; nothing more is submitted", **kw)
    if s == 412:
        actions = "; ".join(str(e.get("message") or e.get("action") or e) for e in problem.errors)
        return RequirementsNotMet(f"{text}{': ' + actions if actions else ''}", **kw)
    if s == 410:
        return AppGone(f"{text} — the app version is retired; re-pin the recipe's app", **kw)
    if s == 429:
        return RateLimited(text, **kw)
    if s == 503 or (s == 500 and code == "entitlement_unavailable"):
        return Unavailable(text, **kw)
    if s == 404:
        return NotFound(text, **kw)
    if s >= 500:
        return ServerError(text, **kw)
    return BadRequest(text, **kw)


def parse_retry_after(value: str | None, reset: str | None = None, now: float | None = None) -> float | None:
    """Seconds to wait: ``Retry-After`` (seconds), else ``X-RateLimit-Reset`` (seconds, or an
    epoch time when it is that large). ``None`` when neither says (our own back-off applies)."""
    for text in (value, reset):
        if not text:
            continue
        try:
            seconds = float(text)
        except ValueError:
            continue  # an HTTP date: rare enough to fall back to our own back-off
        if math.isnan(seconds):
            continue
        if text is reset and seconds > 1e9:  # an epoch timestamp
            seconds -= time.time() if now is None else now
        return max(0.0, min(seconds, 3600.0))
    return None


def _describe(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


@contextmanager
def translate_transport(what: str) -> Iterator[None]:
    """Turn httpx transport failures into ``ConnectFailed`` / ``ResponseLost``."""
    import httpx

    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol) as exc:
        raise ConnectFailed(f"{what}: cannot connect: {_describe(exc)}") from None
    except httpx.TimeoutException as exc:  # read/write timeout: the request may have arrived
        raise ResponseLost(f"{what}: no answer in time ({type(exc).__name__})") from None
    except (httpx.TransportError, httpx.DecodingError) as exc:  # reset, protocol error, truncated body
        raise ResponseLost(f"{what}: connection lost before the answer: {_describe(exc)}") from None
