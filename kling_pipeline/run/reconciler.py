"""Finding the tasks of lost submits in the service's task listing — for every job at once,
without holding a concurrency slot.

A submit whose answer was lost (or an intent a crashed run left) may or may not have
created a task. Each such job waits here; one listing query per look serves them all.
A job is resolved when:

* the listing shows a task with its exact input (and webhook) that no job owns: adopt it;
* the listing **proves** it has caught up past the job's submit: it shows a task this
  run sent at least ``PROOF_MARGIN`` seconds after that submit (a listing shows tasks in
  the order they were made) — and not the job's: its submit created nothing;
* ``reconcile_window`` has passed since the submit (for a listing that lags without
  this run sending anything newer): nothing was created;
* the listing fails: the job's outcome stays unknown (it is reported; ``--retry-unknown``
  re-sends it).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

from ..api.apierrors import ApiError
from ..api.client import ApiClient
from .options import RunOptions

__all__ = ["PROOF_MARGIN", "Lost", "Reconciler", "Verdict"]

PROOF_MARGIN = 1.0  # seconds between a lost submit and a later send whose task proves the listing caught up
MAX_LOOK = 10.0  # seconds between looks, at most
PROOF_TASKS = 1024


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Literal["found", "absent", "unknown"]
    task_id: str | None = None
    why: str = ""


@dataclass(slots=True)
class Lost:
    """A job whose submit may have created a task."""

    key: str
    sent: Mapping[str, Any]  # the input as sent
    webhook: str | None
    lost_at: float  # local monotonic time after which no answer of it can come (its loss, or this run's start)
    intent_at: float  # wall-clock time of its intent (the listing's lower bound, less the clock margin)
    deadline: float  # monotonic: absent once the window has passed
    done: anyio.Event = field(default_factory=anyio.Event)
    verdict: Verdict | None = None


class Reconciler:
    """Looks lost submits up in the task listing while any are waiting."""

    def __init__(self, api: ApiClient, options: RunOptions, app_ref: str | Collection[str], claimed: set[str],
                 on_change: Callable[[int, float | None], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        refs = [app_ref] if isinstance(app_ref, str) else list(app_ref)  # a pipeline's stages: their apps
        self._api, self._options = api, options
        self._apps = {r.split("@", maxsplit=1)[0] for r in refs}
        self._claimed = claimed  # task ids some job owns (shared with the recorder)
        self._clock = clock
        self._on_change = on_change
        self._waiting: dict[str, Lost] = {}
        self._sent: OrderedDict[str, float] = OrderedDict()  # task id -> when this run sent it (monotonic)
        self._wake = anyio.Event()

    def note_sent(self, task_id: str, sent_at: float) -> None:
        """A task this run created, and when its request left: a later look may use it as proof.
        The latest ``PROOF_TASKS`` are kept: the listing shows the newest first, and one is enough."""
        self._sent[task_id] = sent_at
        if len(self._sent) > PROOF_TASKS:
            self._sent.popitem(last=False)
        if self._waiting:
            self._wake.set()

    def now(self) -> float:
        return self._clock()

    async def resolve(self, key: str, sent: Mapping[str, Any], webhook: str | None, *, lost_at: float,
                      deadline: float, intent_at: float) -> Verdict:
        """Wait until the listing says what became of ``key``'s submit (``lost_at``, ``deadline``:
        on this reconciler's clock; ``intent_at``: wall clock)."""
        lost = Lost(key, sent, webhook, lost_at, intent_at, deadline)
        self._waiting[key] = lost
        self._changed()
        self._wake.set()
        try:
            await lost.done.wait()
        finally:
            self._waiting.pop(key, None)
            self._changed()
        assert lost.verdict is not None
        return lost.verdict

    def _changed(self) -> None:
        if self._on_change is not None:
            until = max((lost.deadline for lost in self._waiting.values()), default=None)
            self._on_change(len(self._waiting), until)

    async def run(self) -> None:
        """Look while anybody waits; sleep otherwise (until cancelled with the run)."""
        delay = self._options.reconcile_poll
        while True:
            if not self._waiting:
                self._wake = anyio.Event()
                await self._wake.wait()
                delay = self._options.reconcile_poll
                continue
            self._wake = anyio.Event()
            await self._look()
            pending = [lost.deadline for lost in self._waiting.values()]
            if not pending:
                continue
            nap = min(delay, max(0.0, min(pending) - self._clock()))
            with anyio.move_on_after(nap):
                await self._wake.wait()  # a new waiter, or a new task of ours to prove with
            delay = min(delay * 2, MAX_LOOK)

    async def _look(self) -> None:
        waiting = list(self._waiting.values())
        since = min(lost.intent_at for lost in waiting) - self._options.reconcile_margin
        try:
            listed = await self._list(since)
        except ApiError as exc:
            for lost in waiting:
                self._settle(lost, Verdict("unknown", why=f"the task listing failed ({exc})"))
            return
        newest_proof = max((self._sent[t] for t in listed if t in self._sent), default=-math.inf)
        now = self._clock()
        for lost in sorted(waiting, key=lambda item: item.intent_at):
            found = self._match(lost, listed)
            if found is not None:
                self._claimed.add(found)
                self._settle(lost, Verdict("found", found))
            elif newest_proof >= lost.lost_at + PROOF_MARGIN:
                self._settle(lost, Verdict("absent", why="not in the task listing, which already shows later tasks"))
            elif now >= lost.deadline:
                self._settle(lost, Verdict("absent", why=f"not in the task listing "
                                                         f"{self._options.reconcile_window:g}s after the submit"))

    async def _list(self, since: float) -> dict[str, Mapping[str, Any]]:
        """The caller's tasks created since ``since`` (wall clock), by id."""
        since_iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
        tasks: dict[str, Mapping[str, Any]] = {}
        cursor = None
        for _ in range(self._options.reconcile_pages):
            items, cursor = await self._api.list_tasks(since_iso, cursor)
            for task in items:
                tid = task.get("id")
                if isinstance(tid, str):
                    tasks[tid] = task
            if cursor is None:
                break
        return tasks

    def _match(self, lost: Lost, listed: Mapping[str, Mapping[str, Any]]) -> str | None:
        """The oldest listed task with ``lost``'s input (and webhook) that no job owns."""
        found: list[tuple[str, str]] = []
        for tid, task in listed.items():
            seen = task.get("input")
            if tid in self._claimed or not isinstance(seen, Mapping):
                continue
            if not all(k in seen and seen[k] == v for k, v in lost.sent.items()):
                continue
            if lost.webhook and task.get("webhook") not in (None, lost.webhook):
                continue
            app = str(task.get("app") or "")
            if app and app.split("@", maxsplit=1)[0] not in self._apps:
                continue
            found.append((str(task.get("created_at") or ""), tid))
        return min(found)[1] if found else None

    def _settle(self, lost: Lost, verdict: Verdict) -> None:
        lost.verdict = verdict
        self._waiting.pop(lost.key, None)
        lost.done.set()
