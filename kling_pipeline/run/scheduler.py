"""Scheduling a run's work: one anyio task group, the concurrency slots, submits staged
ahead of free slots, and the signal watcher.

The first Ctrl-C (or SIGTERM) stops submitting and drains in-flight tasks for up to
``drain_timeout`` (or cancels them with ``cancel_inflight``); a second one cancels
everything at once. The manifest is consistent at every record, so any stop leaves a
directory a resume can trust.
"""

from __future__ import annotations

import contextlib
import math
import signal

import anyio
import anyio.abc

from ..api.apierrors import ApiError
from ..core.errors import KlingError
from .context import RunContext
from .outcome import JobResult, RunSummary
from .pipeline import Downstream
from .queue import WorkQueue
from .runner import run_work
from .submit import stage, unstage
from .work import Action, Work

__all__ = ["LOOKAHEAD", "schedule"]

LOOKAHEAD = 64  # submits staged ahead of free slots, at most


async def _drain(ctx: RunContext, workers: anyio.CancelScope) -> None:
    """After the first interrupt: cancel in-flight tasks if asked, wait for them a bounded time."""
    if ctx.options.cancel_inflight:
        for task_id in list(ctx.inflight.tasks):
            with contextlib.suppress(ApiError):  # it may have finished meanwhile; its stream will tell
                await ctx.api.cancel(task_id)
    with anyio.move_on_after(ctx.options.drain_timeout):
        while ctx.inflight.tasks:
            await ctx.inflight.changed.wait()
        return
    workers.cancel()  # still running after the drain time: they stay in the manifest, re-attached next run


async def _watch_signals(ctx: RunContext, workers: anyio.CancelScope, tg: anyio.abc.TaskGroup) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            if ctx.stop.interrupted:
                workers.cancel()  # second Ctrl-C: quit now; the manifest is consistent at every record
                return
            ctx.stop.interrupted = True
            ctx.stop("interrupted")
            tg.start_soon(_drain, ctx, workers)


def _held_back(ctx: RunContext, w: Work) -> bool:
    """After a stop, ``w`` is not started — except, at a budget stop, a job whose money is
    already reserved (staged) or one that submits nothing (re-attach, reconcile, re-download)."""
    if not ctx.stop.is_set():
        return False
    if ctx.stop.reason == "budget":
        return w.action is Action.SUBMIT and w.key not in ctx.staged
    return True


async def schedule(ctx: RunContext, work: list[Work], summary: RunSummary,
                   downstream: Downstream | None = None) -> None:
    """Do ``work`` under ``concurrency`` slots; results go to ``summary``. With ``downstream``
    (a pipeline), each completed job's downstream jobs join the work as it goes."""
    queue = WorkQueue(work, growing=downstream is not None)

    def done(w: Work, result: JobResult) -> None:
        summary.add(result)
        if result.status == "not_run" and w.action is Action.SUBMIT:
            summary.not_run_cost += w.cost
        ctx.events.finished(w, result)
        if downstream is not None:
            if result.status == "completed":
                more = downstream.after(w.key)
                queue.add(more.work)
                for s in (*more.failed, *more.unknown):
                    summary.add(JobResult(s.key, s.job_id or s.key[:10], s.state, error=s.error))
            else:
                downstream.chain.cut_below(w.key)
            queue.ended()

    async def one(w: Work) -> None:
        result = JobResult(w.key, w.job_id, "interrupted")
        ctx.gate.job_started(w.key)
        try:
            result = await run_work(ctx, w)
        except ApiError as exc:  # escaped the job's own handling: record it; a fatal one stops the run
            result = JobResult(w.key, w.job_id, "failed", error=str(exc))
            if exc.fatal:
                ctx.stop("fatal", exc)
        except KlingError as exc:  # e.g. the manifest cannot be written: nothing else can safely go on
            result = JobResult(w.key, w.job_id, "failed", error=str(exc))
            ctx.stop("fatal", exc)
        except Exception as exc:  # a bug: this job fails, the run goes on, the manifest stays consistent
            result = JobResult(w.key, w.job_id, "failed", error=f"internal error: {type(exc).__name__}: {exc}")
        finally:
            ctx.slots.job_ended(w.key)
            ctx.gate.job_ended(w.key)
            done(w, result)

    stager = _Stager(ctx, queue, min(LOOKAHEAD, ctx.options.concurrency) if ctx.options.mode != "collect" else 0)
    try:
        async with anyio.create_task_group() as outer:
            async with anyio.create_task_group() as workers:
                outer.start_soon(_watch_signals, ctx, workers.cancel_scope, outer)
                outer.start_soon(stager.run)
                outer.start_soon(ctx.reconciler.run)
                async for w in stager.taken:
                    if w.action is Action.RECONCILE:  # it waits for the listing first, without a slot
                        ctx.gate.job_started(w.key)
                        workers.start_soon(one, w)
                        continue
                    await ctx.slots.acquire(w.key)
                    ended = await stager.take(w)
                    if ended is None and _held_back(ctx, w):
                        ended = (await unstage(ctx, w, f"stopped: {ctx.stop.reason}") if w.key in ctx.staged
                                 else JobResult(w.key, w.job_id, "not_run", error=ctx.stop.reason))
                        ctx.staged.pop(w.key, None)
                        ctx.gate.job_ended(w.key)
                    if ended is not None:
                        ctx.slots.job_ended(w.key)
                        done(w, ended)
                        continue
                    workers.start_soon(one, w)
            outer.cancel_scope.cancel()
    finally:
        stager.taken.close()
        stager.abandon()


class _Stager:
    """Takes the work in order and stages submits ahead of free slots: money reserved, files
    uploaded, so a freed slot sends its next request at once. At most ``depth`` jobs are staged
    and not yet started. No intent is written while staged (it is written in the job's turn to
    be sent): a staged job never started (a stop, a crash) only gives its money back. The
    scheduler takes the work from ``taken``, in the same order."""

    def __init__(self, ctx: RunContext, queue: WorkQueue, depth: int) -> None:
        self.ctx = ctx
        self.queue = queue
        self.depth = depth
        self.ready: dict[str, anyio.Event] = {}
        self.ended: dict[str, JobResult] = {}
        self.room = anyio.Semaphore(max(1, depth))
        self._send, self.taken = anyio.create_memory_object_stream[Work](math.inf)

    async def run(self) -> None:
        """Reserve money in order (so a later job never holds what an earlier one, which the
        scheduler starts first, waits for), then upload and write intents concurrently."""
        ctx = self.ctx
        async with self._send, anyio.create_task_group() as tg:
            while (w := await self.queue.get()) is not None:
                if self.depth and w.action is Action.SUBMIT:
                    await self.room.acquire()
                    event = self.ready.setdefault(w.key, anyio.Event())
                    if ctx.stop.is_set():  # the scheduler decides (it holds the job back)
                        event.set()
                    else:
                        ctx.gate.job_started(w.key)
                        if await ctx.gate.reserve(w.cost):
                            tg.start_soon(self._stage, w)
                        else:
                            if not ctx.stop.is_set():
                                ctx.stop("budget")
                            self.ended[w.key] = JobResult(w.key, w.job_id, "not_run", error="budget")
                            ctx.gate.job_ended(w.key)
                            event.set()
                await self._send.send(w)

    async def _stage(self, w: Work) -> None:
        ctx = self.ctx
        try:
            got = await stage(ctx, w, (w.state.attempts if w.state else 0) + 1, reserved=True)
        except ApiError as exc:
            ctx.gate.release(w.cost)
            got = JobResult(w.key, w.job_id, "failed", error=str(exc))
        if isinstance(got, JobResult):
            self.ended[w.key] = got
            ctx.gate.job_ended(w.key)
        else:
            ctx.staged[w.key] = got
        self.ready[w.key].set()

    async def take(self, w: Work) -> JobResult | None:
        """Wait until ``w`` is staged (if it is staged at all); its result if staging ended it."""
        if not self.depth or w.action is not Action.SUBMIT:
            return None
        await self.ready.setdefault(w.key, anyio.Event()).wait()
        del self.ready[w.key]
        self.room.release()
        return self.ended.pop(w.key, None)

    def abandon(self) -> None:
        """Staged jobs left unsent (the run was cancelled): their money back."""
        for key in list(self.ctx.staged):
            self.ctx.gate.release(self.ctx.staged.pop(key).reserved)
