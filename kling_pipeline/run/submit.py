"""Sending a job: reserve, stage (upload, intent), send in the pacer's turn — and, when the
answer is lost, find the task it created in the service's listing.

Money rules, in order of importance:

* a request is re-sent only when the previous one provably created nothing
  (``created is False``); after a lost answer the job is ``unknown`` and is
  reconciled through the task listing, never re-sent blindly;
* every submit is preceded by a durable intent and a reservation in the budget;
  the reservation is released when nothing was created.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from typing import Any

import anyio

from ..api.apierrors import ApiError, ConnectFailed, RateLimited, ResponseLost, Unavailable
from ..core.errors import KlingError
from ..store.records import AcceptedRecord, AdoptedRecord, IntentRecord, NotCreatedRecord, UnknownRecord
from .chain import prepare
from .context import RunContext, Staged
from .outcome import JobResult
from .work import Work

__all__ = ["reconcile", "stage", "submit", "unstage"]


async def stage(ctx: RunContext, w: Work, attempt: int, *, reserved: bool = False) -> Staged | JobResult:
    """Reserve the job's price (unless the caller did) and upload its files. Its intent is
    written later, in its turn to be sent: a crash before then leaves nothing to reconcile."""
    assert w.job is not None
    if not reserved:
        if ctx.stop.is_set():
            return JobResult(w.key, w.job_id, "not_run", error=ctx.stop.reason)
        if not await ctx.gate.reserve(w.cost):
            ctx.stop("budget")
            return JobResult(w.key, w.job_id, "not_run", error="budget")
    try:
        made = ctx.chain.made.get(w.key) if ctx.chain is not None else None
        if made is None:
            request, files = await ctx.uploader.prepare(ctx.plan.render(w.job))
        else:  # a pipeline's downstream job: its upstream files by URL (or uploaded), its values in place
            rendered, upstream = await prepare(made, ctx.out_dir, ctx.uploader)
            request, files = await ctx.uploader.prepare(rendered)
            files.update(upstream)
    except ApiError as exc:
        ctx.gate.release(w.cost)
        if exc.fatal:
            ctx.stop("fatal", exc)
        return JobResult(w.key, w.job_id, "failed", error=f"upload failed: {exc}")
    except (KlingError, OSError) as exc:  # a reference image changed or vanished since the plan
        ctx.gate.release(w.cost)
        return JobResult(w.key, w.job_id, "failed", error=str(exc))
    return Staged(request, files, attempt, w.cost)


async def unstage(ctx: RunContext, w: Work, why: str, *, intent_written: bool = False) -> JobResult:
    """A staged job that will not be sent: give its money back (and, if its intent was
    already written, say in the manifest that nothing was created)."""
    ctx.gate.release(w.cost)
    if intent_written:
        await ctx.record(NotCreatedRecord(w.key, f"never sent: {why}"))
    return JobResult(w.key, w.job_id, "not_run", error=why)


def _intent(ctx: RunContext, w: Work, staged: Staged) -> IntentRecord:
    assert w.job is not None
    job = w.job
    return IntentRecord(w.key, w.job_id, staged.attempt, staged.request, w.cost, w.units, w.output_name,
                        dict(job.combination.labels), job.repeat_index, staged.files, ctx.run_id,
                        ctx.stage_for(w).app_ref, ctx.webhook_for(w.key), stage=w.stage or None)


async def submit(ctx: RunContext, w: Work, attempt: int) -> str | JobResult:
    """Stage (unless the scheduler already did), then send. Returns the task id, or the
    job's result if it ended here."""
    staged = ctx.staged.pop(w.key, None)
    if staged is None:
        got = await stage(ctx, w, attempt)
        if isinstance(got, JobResult):
            return got
        staged = got
    return await _send(ctx, w, staged)


async def _send(ctx: RunContext, w: Work, staged: Staged) -> str | JobResult:
    """Send a staged request in its turn of the runs pacer, until it creates a task.

    A 429 or a 503 created nothing: the job waits for its next turn, for as long as the run
    goes on — never a failure, no attempt spent. Unreachable: again, until
    ``connect_grace`` runs out. Anything else ends here (or in reconciliation)."""
    request, attempt = staged.request, staged.attempt
    runs = ctx.api.pacing.runs
    written = False
    for tries in itertools.count():
        turn = await runs.acquire()
        with turn:
            # A budget stop does not hold back a job whose money is already reserved: it fits.
            if ctx.stop.is_set() and ctx.stop.reason != "budget":  # nothing was sent for it
                turn.abandon()
                return await unstage(ctx, w, f"stopped: {ctx.stop.reason}", intent_written=written)
            if not written:  # durable before the request leaves: an intent on disk means "maybe sent"
                await ctx.record(_intent(ctx, w, staged))
                written = True
            ctx.events.submitting(w, tries)
            sent_at = ctx.reconciler.now()
            try:
                try:
                    view = await ctx.api.submit(ctx.stage_for(w).app_ref, request, ctx.webhook_for(w.key), turn=turn)
                except (ApiError, anyio.get_cancelled_exc_class()):
                    raise
                except Exception as exc:  # unmapped failure after the request may have left: unknown
                    raise ResponseLost(f"submit: unexpected {type(exc).__name__}: {exc}") from exc
            except ApiError as exc:
                if exc.created is None:  # the request may have created a task: never re-send blindly
                    await ctx.record(UnknownRecord(w.key, str(exc)))
                    ctx.events.unknown(w, str(exc))
                    lost_at = ctx.reconciler.now()
                    return await reconcile(ctx, w, request, reserved=w.cost, attempt=attempt, lost_at=lost_at,
                                           deadline=lost_at + ctx.options.reconcile_window, intent_at=time.time())
                if isinstance(exc, RateLimited):  # the turn's answer has already slowed the pacer down
                    ctx.events.throttled(w, exc, runs.gate_wait())
                    continue
                if isinstance(exc, Unavailable):
                    ctx.events.throttled(w, exc, runs.backoff(exc.retry_after))
                    continue
                if isinstance(exc, ConnectFailed):  # the service (or the network) is down for everybody
                    if ctx.reach.unreachable_for() > ctx.options.connect_grace:
                        ctx.gate.release(w.cost)
                        await ctx.record(NotCreatedRecord(w.key, str(exc)))
                        ctx.stop("fatal", ApiError(f"{exc}; gave up after {ctx.options.connect_grace:g}s "
                                                   "without reaching the API"))
                        return JobResult(w.key, w.job_id, "not_run", error=str(exc))  # nothing was sent
                    runs.backoff(None)
                    continue
                ctx.gate.release(w.cost)
                await ctx.record(NotCreatedRecord(w.key, str(exc)))
                if exc.fatal:
                    ctx.stop("fatal", exc)
                return JobResult(w.key, w.job_id, "failed", error=str(exc))
        ctx.reach.reachable()
        ctx.reconciler.note_sent(view.id, sent_at)
        await ctx.record(AcceptedRecord(w.key, view.id))
        ctx.events.accepted(w, view.id)
        return view.id
    raise AssertionError("unreachable")  # pragma: no cover


async def reconcile(ctx: RunContext, w: Work, sent: Mapping[str, Any] | None, *, reserved: int, attempt: int,
                    lost_at: float, deadline: float, intent_at: float) -> str | JobResult:
    """Find the task a lost submit created (see ``reconciler``), without holding a slot
    meanwhile. Adopt it; or, once the listing shows the submit created nothing, release
    ``reserved`` and submit again."""
    if not ctx.options.reconcile or sent is None:
        return _unknown(w, "submit answer lost; reconciliation is off (--retry-unknown re-sends)")
    ctx.slots.suspend(w.key)
    verdict = await ctx.reconciler.resolve(w.key, sent, ctx.webhook_for(w.key), lost_at=lost_at, deadline=deadline,
                                           intent_at=intent_at)
    await ctx.slots.acquire(w.key)
    if verdict.outcome == "unknown":
        return _unknown(w, f"submit answer lost and {verdict.why}; run again to reconcile, "
                           "or --retry-unknown to re-send")
    if verdict.outcome == "found" and verdict.task_id is not None:
        await ctx.record(AdoptedRecord(w.key, verdict.task_id, "listing"))
        ctx.events.accepted(w, verdict.task_id)
        return verdict.task_id
    ctx.gate.release(reserved)
    if w.job is None:  # the recipe no longer has this job: nothing was created, nothing to do
        await ctx.record(NotCreatedRecord(w.key, f"{verdict.why}; no longer in the recipe"))
        return JobResult(w.key, w.job_id, "not_run", error="no longer in the recipe")
    await ctx.record(NotCreatedRecord(w.key, verdict.why))
    if ctx.options.mode == "collect":  # collect never sends anything: the next run does
        return JobResult(w.key, w.job_id, "not_run", error="its submit created no task; the next run sends it")
    ctx.events.resubmit(w)
    return await submit(ctx, w, attempt + 1)


def _unknown(w: Work, reason: str) -> JobResult:
    return JobResult(w.key, w.job_id, "unknown", error=reason)
