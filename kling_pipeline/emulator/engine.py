"""Task life: creation, admission per API key, timed progress, completion, billing.

Event-driven: each live task holds at most one ``loop.call_at`` timer for its next
step, so thousands of tasks cost nothing while they wait. Everything here runs on
the server's event loop.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from .apps import ServedApp
from .config import EmulatorConfig, Faults, Latency
from .ident import Clock, Dice, new_id
from .ledger import Ledger
from .problems import Problem
from .produce import OutputMaker
from .tasks import Status, Task
from .validation import RunRequest
from .webhooks import WebhookSender

__all__ = ["Engine"]

UPLOAD_FRACTION = 0.9
"""Share of the run spent before the 'uploading' status."""

MESSAGES = {
    "fail": "Kling task failed: the provider reported an internal error while generating the image "
    "(emulated task_failure_rate fault)",
    "provider_limit": "Kling API error (code 1303): parallel task count over resource pack limit; the "
    "account's concurrency/rate limit was exceeded, retry later",
    "reject": "task rejected at admission: insufficient balance (emulated reject_rate fault)",
}
FAIL_AT = {"fail": 0.5, "provider_limit": 0.1, "bad_image": 0.1}
"""Share of the run after which a failing task fails."""


class Engine:
    def __init__(
        self,
        cfg: EmulatorConfig,
        *,
        clock: Clock,
        ledger: Ledger,
        outputs: OutputMaker,
        webhooks: WebhookSender,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.dice = Dice(cfg.seed)
        self.ledger = ledger
        self.outputs = outputs
        self.webhooks = webhooks
        self.faults: Faults = cfg.faults
        self.latency: Latency = cfg.latency
        self.tasks: dict[str, Task] = {}
        self.closed = False
        self._seq = 0
        self._attempts: dict[str, int] = {}
        self._running: dict[str, int] = {}
        self._queued: dict[str, deque[Task]] = {}

    # ---- submission -------------------------------------------------------
    def next_attempt(self, input_sha: str) -> int:
        """Number this valid ``POST /apps/run`` of the input (0, 1, 2...) for fault decisions."""
        attempt = self._attempts.get(input_sha, 0)
        self._attempts[input_sha] = attempt + 1
        return attempt

    def create(
        self,
        *,
        key_id: str,
        served: ServedApp,
        request: RunRequest,
        input_sha: str,
        attempt: int,
        base_url: str,
        image_check: str | None,
    ) -> Task:
        now = self.clock.now()
        self._seq += 1
        task = Task(
            task_id=new_id(),
            seq=self._seq,
            key_id=key_id,
            app=served.name,
            app_id=served.app_id,
            version_id=request.version or served.version,
            function=request.function,
            input=request.input,
            input_sha=input_sha,
            sample_index=self.ledger.submission_count(input_sha),
            webhook=request.webhook,
            session_id=request.session_id,
            base_url=base_url,
            created_mono=now,
            created_at=self.clock.stamp(now),
        )
        task.attempt = attempt
        task.served = served
        task.image_check = image_check
        self.tasks[task.id] = task
        self.ledger.submitted(task)
        faults, dice = self.faults, self.dice
        if dice.chance(faults.reject_rate, "reject", input_sha, attempt):
            task.error = MESSAGES["reject"]
            self._finish(task, Status.REJECTED)
            return task
        if dice.chance(faults.provider_limit_rate, "provider_limit", input_sha, attempt):
            task.outcome = "provider_limit"
        elif dice.chance(faults.task_failure_rate, "task_failure", input_sha, attempt):
            task.outcome = "fail"
        elif image_check is not None:
            task.outcome = "bad_image"
        task.run_seconds = self.latency.sample(dice.unit("latency", input_sha, attempt))
        asyncio.get_running_loop().call_soon(self._enqueue, task)
        return task

    # ---- admission --------------------------------------------------------
    def _can_run(self, key_id: str) -> bool:
        limit = self.faults.max_running_per_key
        return limit is None or self._running.get(key_id, 0) < limit

    def _enqueue(self, task: Task) -> None:
        if task.terminal or self.closed:
            return
        task.set_status(Status.QUEUED, self.clock.stamp(self.clock.now()))
        if self._can_run(task.key_id):
            self._start(task, since_creation=True)
        else:
            self._queued.setdefault(task.key_id, deque()).append(task)

    def admit_waiting(self) -> None:
        """Start queued tasks while their keys have free slots (after a release or a fault change)."""
        for key_id, queue in self._queued.items():
            while queue and self._can_run(key_id):
                task = queue.popleft()
                if not task.terminal:
                    self._start(task, since_creation=False)

    def _start(self, task: Task, *, since_creation: bool) -> None:
        """Run ``task``; its latency counts from its creation when it was admitted at once
        (however busy the loop was meanwhile), else from now."""
        self._running[task.key_id] = self._running.get(task.key_id, 0) + 1
        task.holds_slot = True
        task.progress = 0
        task.set_status(Status.RUNNING, self.clock.stamp(self.clock.now()))
        task.steps = self._plan(task)
        task.step_index = 0
        task.t0 = asyncio.get_running_loop().time()
        if since_creation:
            task.t0 -= self.clock.now() - task.created_mono
        self._schedule_next(task)

    def _plan(self, task: Task) -> tuple[tuple[float, str, int], ...]:
        """(offset seconds, action, progress) from the start of the run to its end."""
        total = task.run_seconds
        end = total * FAIL_AT.get(task.outcome, UPLOAD_FRACTION)
        cfg = self.cfg
        interval = min(max(total / cfg.progress_steps, cfg.min_progress_interval), cfg.max_progress_interval)
        steps: list[tuple[float, str, int]] = []
        if interval > 0:
            offset = interval
            while offset < end - 1e-9:
                steps.append((offset, "progress", min(99, round(100 * offset / total))))
                offset += interval
        if task.outcome == "complete":
            steps += [(end, "uploading", min(99, int(100 * UPLOAD_FRACTION))), (total, "complete", 100)]
        else:
            steps.append((end, task.outcome, task.progress))
        return tuple(steps)

    def _schedule_next(self, task: Task) -> None:
        offset = task.steps[task.step_index][0]
        task.timer = asyncio.get_running_loop().call_at(task.t0 + offset, self._step, task)

    def _step(self, task: Task) -> None:
        task.timer = None
        if task.terminal or self.closed:
            return
        _, action, progress = task.steps[task.step_index]
        task.step_index += 1
        stamp = self.clock.stamp(self.clock.now())
        if action == "progress":
            task.progress = progress
            task.touch(stamp)
        elif action == "uploading":
            task.progress = progress
            task.set_status(Status.UPLOADING, stamp)
        elif action == "complete":
            self._complete(task)
            return
        else:
            task.error = (
                MESSAGES.get(action) or f"Kling API error (code 1201): invalid reference image: {task.image_check}"
            )
            self._finish(task, Status.FAILED)
            return
        self._schedule_next(task)

    # ---- ending -----------------------------------------------------------
    def _complete(self, task: Task) -> None:
        """Complete and bill by the app's unit. Output files are drawn on their first
        download (then kept), so a client that never downloads costs no drawing."""
        served = task.served
        if served is None:  # every task is created with its app
            raise RuntimeError(f"task {task.id} has no app")
        pricing = served.spec.pricing
        quantity = pricing.quantity(task.input)
        stamp = self.clock.stamp(self.clock.now())
        short = self.dice.chance(self.faults.short_list_rate, "short_list", task.input_sha, task.attempt)
        task.output = self.outputs.make(served.plan, task, quantity, stamp, short=short)
        task.usage_events = [served.plan.usage_event(task.input, quantity, pricing.unit)]
        task.progress = 100
        self.ledger.charge(task, quantity=quantity, unit=pricing.unit, microcents=pricing.cost(task.input), stamp=stamp)
        self._finish(task, Status.COMPLETED)

    def cancel(self, task: Task) -> None:
        if task.terminal:
            raise Problem(
                409,
                "invalid_transition",
                "Task already finished",
                f"task {task.id} is already {task.status.name.lower()}; it cannot be cancelled",
            )
        self._finish(task, Status.CANCELLED)

    def _finish(self, task: Task, status: Status) -> None:
        if task.timer is not None:
            task.timer.cancel()
            task.timer = None
        task.set_status(status, self.clock.stamp(self.clock.now()))
        if task.holds_slot:
            task.holds_slot = False
            self._running[task.key_id] -= 1
            self.admit_waiting()
        if task.webhook and not self.closed:
            self.webhooks.send(task.webhook, task.webhook_payload())

    def delete(self, task: Task, *, files: bool) -> None:
        if not task.terminal:
            self._finish(task, Status.CANCELLED)
        del self.tasks[task.id]
        if files:
            self.outputs.files.delete_task_files(task.id)

    # ---- runtime changes and shutdown ---------------------------------------
    def set_faults(self, faults: Faults) -> None:
        self.faults = faults
        self.admit_waiting()

    def close(self) -> None:
        """Stop all timers and wake every stream so it can end."""
        self.closed = True
        for task in self.tasks.values():
            if task.timer is not None:
                task.timer.cancel()
                task.timer = None
            for event in task.waiters:
                event.set()

    def snapshot(self) -> list[dict[str, Any]]:
        return [
            {
                "id": t.id,
                "status": int(t.status),
                "status_name": t.status.name.lower(),
                "progress": t.progress,
                "key_id": t.key_id,
                "input_sha256": t.input_sha,
                "sample_index": t.sample_index,
                "attempt": t.attempt,
                "run_seconds": t.run_seconds,
                "error": t.error,
                "created_at": t.created_at,
                "updated_at": t.updated_at,
            }
            for t in self.tasks.values()
        ]
