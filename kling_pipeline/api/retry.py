"""The retry policies of the run layer, in one place, on stamina.

Each policy names what it retries (a predicate on the error classes of ``apierrors``),
how often and how long it waits. None of them ever re-sends a submit: whether a submit
may go again is decided from ``created`` in ``apierrors`` and the pacer's queue decides
when (see ``pacing``); these are for calls that cost nothing when repeated. Tests run
them without sleeping through ``stamina.set_testing`` (see ``tests/unit/test_retry.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

import stamina

from .apierrors import ApiError, ConnectFailed, DownloadFailed, NotFound, ResponseLost

__all__ = ["DOWNLOAD", "FOLLOW", "LISTING", "UPLOAD", "NotListedYet", "Policy", "StillRunning", "attempts"]


class StillRunning(Exception):
    """A task followed to its end is not there yet: look again."""


class NotListedYet(Exception):
    """A lost submit's task is not in the task listing (yet): look again while it may lag."""


def transient_transfer(exc: Exception) -> bool:
    """An upload or a file transfer that may go again: no connection, or no complete answer."""
    return isinstance(exc, ConnectFailed | ResponseLost)


def transient_download(exc: Exception) -> bool:
    """A download may go again unless what it fetched can never pass (too big, the wrong type)."""
    return transient_transfer(exc) or (isinstance(exc, DownloadFailed) and not exc.permanent)


def not_there_yet(exc: Exception) -> bool:
    """Following a task: it is still running, or a stream or a read failed — any API error but
    "no such task" (reads cost nothing; the task's own deadline bounds the looking)."""
    return isinstance(exc, StillRunning) or (isinstance(exc, ApiError) and not isinstance(exc, NotFound))


def not_listed_yet(exc: Exception) -> bool:
    return isinstance(exc, NotListedYet)


@dataclass(frozen=True, slots=True)
class Policy:
    """``attempts`` (None: until ``timeout``), waits from ``initial`` doubling to ``maximum``, plus jitter."""

    name: str
    on: object  # the predicate (stamina's ``on``)
    attempts: int | None
    initial: float
    maximum: float
    jitter: float
    timeout: float | None = None


UPLOAD = Policy("upload", transient_transfer, attempts=4, initial=0.5, maximum=4.0, jitter=0.5)
DOWNLOAD = Policy("download", transient_download, attempts=4, initial=0.5, maximum=4.0, jitter=0.5)
FOLLOW = Policy("follow", not_there_yet, attempts=None, initial=0.25, maximum=10.0, jitter=0.25)
LISTING = Policy("listing", not_listed_yet, attempts=None, initial=1.0, maximum=10.0, jitter=0.0)


def attempts(policy: Policy, *, timeout: float | None = None, initial: float | None = None
             ) -> AsyncIterator[AbstractContextManager[None]]:
    """``async for attempt in attempts(UPLOAD): with attempt: ...`` — the last failure is re-raised."""
    limit = policy.timeout if timeout is None else timeout
    context: AsyncIterator[AbstractContextManager[None]] = stamina.retry_context(
        on=policy.on,  # type: ignore[arg-type]
        attempts=policy.attempts, timeout=limit, wait_initial=policy.initial if initial is None else initial,
        wait_max=policy.maximum, wait_jitter=policy.jitter)
    return context
