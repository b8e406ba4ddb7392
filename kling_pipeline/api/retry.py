"""The retry policies of the run layer, in one place, on stamina.

Each policy names what it retries (a predicate on the error classes of ``apierrors``),
how often and how long it waits. None of them ever re-sends a submit: whether a submit
may go again is decided from ``created`` in ``apierrors`` and the pacer's queue decides
when (see ``pacing``); these are for calls that cost nothing when repeated. Tests run
them without sleeping through ``stamina.set_testing`` (see ``tests/unit/test_retry.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import stamina

from .apierrors import ApiError, ConnectFailed, DownloadFailed, NotFound, ResponseLost

__all__ = ["DOWNLOAD", "FOLLOW", "UPLOAD", "Policy", "StillRunning", "call"]


class StillRunning(Exception):
    """A task followed to its end is not there yet: look again."""


def transient_transfer(exc: Exception) -> bool:
    """An upload or a file transfer that may go again: no connection, or no complete answer."""
    return isinstance(exc, ConnectFailed | ResponseLost)


def transient_download(exc: Exception) -> bool:
    """A download may go again unless what it fetched can never pass (too big, the wrong type)."""
    return transient_transfer(exc) or (isinstance(exc, DownloadFailed) and not exc.permanent)


def not_there_yet(exc: Exception) -> bool:
    """Following a task: it is still running, or a stream or a read failed — any API error but
    "no such task" and the fatal ones (reads cost nothing; the task's own deadline, and
    ``--connect-grace`` for an unreachable API, bound the looking)."""
    return isinstance(exc, StillRunning) or (isinstance(exc, ApiError) and not isinstance(exc, NotFound)
                                               and not exc.fatal)


@dataclass(frozen=True, slots=True)
class Policy:
    """``attempts`` (None: until ``timeout``), waits from ``initial`` doubling to ``maximum``, plus jitter."""

    name: str
    on: Callable[[Exception], bool]  # the predicate: retry after this failure?
    attempts: int | None
    initial: float
    maximum: float
    jitter: float
    timeout: float | None = None


UPLOAD = Policy("upload", transient_transfer, attempts=4, initial=0.5, maximum=4.0, jitter=0.5)
DOWNLOAD = Policy("download", transient_download, attempts=4, initial=0.5, maximum=4.0, jitter=0.5)
FOLLOW = Policy("follow", not_there_yet, attempts=None, initial=0.25, maximum=10.0, jitter=0.25)


T = TypeVar("T")


async def call(policy: Policy, fn: Callable[[], Awaitable[T]], *, give_up_after: float | None = None) -> T:
    """``await fn()``, again as ``policy`` says while it fails with what the policy retries;
    the last failure is re-raised. The first try costs nothing extra (most calls succeed):
    stamina's machinery is entered only after a failure, which it then sees as its first."""
    try:
        return await fn()
    except Exception as exc:
        if not policy.on(exc):
            raise
        first: Exception | None = exc
    result: T | None = None
    async for attempt in stamina.retry_context(
            on=policy.on, attempts=policy.attempts, timeout=policy.timeout if give_up_after is None else give_up_after,
            wait_initial=policy.initial, wait_max=policy.maximum, wait_jitter=policy.jitter):
        with attempt:
            if first is not None:  # the failure above is this loop's first attempt: wait, then go again
                failure, first = first, None
                raise failure
            result = await fn()
    return result  # type: ignore[return-value]
