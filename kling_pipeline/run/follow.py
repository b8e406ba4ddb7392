"""Following a task to its end, then settling: download its outputs, record what it cost."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
import anyio.to_thread

from ..api.apierrors import ApiError, ConnectFailed, DownloadFailed, NotFound, Unreachable, is_provider_limit
from ..api.retry import FOLLOW, StillRunning, call
from ..api.wire import Status, TaskView, billed_units
from ..store.cache import CachePut
from ..store.records import DoneRecord
from .context import RunContext
from .outcome import JobResult
from .outputs import save_outputs, serve_cached
from .submit import submit
from .work import Work, retryable_failure

__all__ = ["finish", "redownload"]


async def _observe(ctx: RunContext, w: Work, task_id: str, stream: bool) -> TaskView:
    """The task once it is terminal: from its stream, else from ``GET /tasks/{id}``;
    ``StillRunning`` when neither shows the end yet; ``Unreachable`` once the API could not be
    reached for ``connect_grace`` seconds."""
    if isinstance(ctx.stop.fatal, Unreachable):  # another job found out: stop looking too
        raise ctx.stop.fatal
    try:
        view = await _look(ctx, w, task_id, stream)
    except ConnectFailed as exc:
        if ctx.reach.unreachable_for() > ctx.options.connect_grace:
            raise Unreachable(f"{exc}; gave up after {ctx.options.connect_grace:g}s without reaching the API") \
                from None
        raise
    ctx.reach.reachable()
    return view


async def _look(ctx: RunContext, w: Work, task_id: str, stream: bool) -> TaskView:
    if stream:
        try:
            async for view in ctx.api.follow(task_id):
                ctx.events.progress(w, view)
                if view.status.terminal:
                    return view
        except NotFound:
            raise
        except ApiError:
            pass  # a cut or refused stream: the task itself says
    view = await ctx.api.get_task(task_id)
    if not view.status.terminal:
        raise StillRunning
    return view


async def _wait_terminal(ctx: RunContext, w: Work, task_id: str) -> TaskView | JobResult:
    """Follow the stream (reconnecting), then poll; bounded by ``task_timeout``."""
    tries = 0

    async def observe() -> TaskView:
        nonlocal tries
        tries += 1
        return await _observe(ctx, w, task_id, stream=tries <= ctx.options.stream_attempts)

    try:
        return await call(FOLLOW, observe, give_up_after=ctx.options.task_timeout)
    except NotFound:
        return JobResult(w.key, w.job_id, "unknown", task_id=task_id, error=f"task {task_id} not found")
    except Unreachable as exc:
        ctx.stop("fatal", exc)
        return JobResult(w.key, w.job_id, "unknown", task_id=task_id,
                         error=f"could not follow task {task_id}: {exc}; `collect` or a new run re-attaches to it")
    except (StillRunning, ApiError):
        pass
    return JobResult(w.key, w.job_id, "unknown", task_id=task_id,
                     error=f"task {task_id} not finished after {ctx.options.task_timeout:g}s; run again to re-attach")


def _sent(ctx: RunContext, w: Work) -> Mapping[str, Any]:
    """The request as it was sent (its intent), for the unit price its fields select."""
    state = ctx.state.jobs.get(w.key)
    return state.intent.input if state is not None and state.intent is not None else {}


def _billed(ctx: RunContext, w: Work, view: TaskView, reserved: int) -> tuple[int, int | None]:
    """(what the task cost, the units billed): the task's ``usage_events`` quantity x the unit
    price of the request sent (its rate; a range's typical price). A price that is unknown is
    counted at the reservation (``--max-job-usd``), as is a failure without billing data."""
    pricing = ctx.stage_for(w).pricing
    units = billed_units(view.task, pricing.unit)
    if view.status is Status.REJECTED:
        return 0, 0
    if units is None and view.status is Status.FAILED and is_provider_limit(view.error):
        return 0, 0  # the provider refused before running: billing happens on completion only
    if units is None and view.status is Status.COMPLETED:
        units = w.units
    if units is None:
        return reserved, None  # failed/cancelled with no billing data: count it (conservative)
    if pricing.confidence == "unknown":
        return (reserved if units else 0), units
    return pricing.unit_price(_sent(ctx, w)) * units, units


async def finish(ctx: RunContext, w: Work, task_id: str, reserved: int, attempt: int) -> JobResult:
    """Follow ``task_id`` to its end, settle ``reserved`` at the billed amount, save the outputs."""
    ctx.inflight.add(task_id)
    try:
        outcome = await _wait_terminal(ctx, w, task_id)
    finally:
        ctx.inflight.discard(task_id)
    if isinstance(outcome, JobResult):
        return outcome
    view = outcome
    billed, units = _billed(ctx, w, view, reserved)
    if view.status is not Status.COMPLETED:
        ctx.gate.settle(reserved, billed)
        await ctx.record(DoneRecord(w.key, w.job_id, task_id, view.status.value, billed, view.error))
        if view.status is Status.REJECTED:
            reason = view.error or "no reason given"
            ctx.stop("fatal", ApiError(f"task {task_id} was rejected by the service: {reason}"))
        state = ctx.state.jobs.get(w.key)
        if state is not None and w.job is not None and not ctx.stop.is_set() \
                and retryable_failure(state, ctx.options.provider_retries):
            delay = ctx.api.pacing.runs.backoff(None, slower=True)
            ctx.events.throttled(w, ApiError(view.error or "provider limit"), delay)
            result = await submit(ctx, w, attempt + 1)
            if isinstance(result, JobResult):
                return result
            return await finish(ctx, w, result, w.cost, attempt + 1)
        return JobResult(w.key, w.job_id, view.status.value, billed, task_id, view.error)
    ctx.slots.task_ended(w.key)
    try:
        saved, writes = await save_outputs(ctx, w, view, billed)
    except (DownloadFailed, ApiError) as exc:
        ctx.gate.settle(reserved, billed)
        await ctx.record(DoneRecord(w.key, w.job_id, task_id, "completed", billed, f"download failed: {exc}",
                                    raw_output=view.output, download_pending=True))
        return JobResult(w.key, w.job_id, "failed", billed, task_id,
                         f"paid, but the download failed: {exc}; run again to fetch it (no new charge)")
    ctx.gate.settle(reserved, billed)
    await ctx.journal.write_files(writes)
    await ctx.record(DoneRecord(w.key, w.job_id, task_id, "completed", billed, None, tuple(saved), units=units,
                                raw_output=view.output))
    if ctx.cache is not None:  # paid and on disk: any output directory may use it now
        files = tuple((ctx.out_dir / o.path, o.sha256, o.content_type) for o in saved)
        ctx.journal.queue(CachePut(ctx.cache, w.key, ctx.stage_for(w).app_ref, task_id, billed, files, view.output))
    return JobResult(w.key, w.job_id, "completed", billed, task_id, files=tuple(o.path for o in saved))


async def from_cache(ctx: RunContext, w: Work) -> JobResult | None:
    """Serve a job from the shared cache; None when its entry turned out missing or damaged (send it)."""
    assert ctx.cache is not None
    entry = await anyio.to_thread.run_sync(ctx.cache.get, w.key)
    if entry is None:
        return None
    saved, writes = await anyio.to_thread.run_sync(serve_cached, ctx, w, entry)
    await ctx.journal.write_files(writes)
    await ctx.record(DoneRecord(w.key, w.job_id, entry.task_id, "completed", 0, None, tuple(saved),
                                raw_output=entry.raw_output, cached=True))
    return JobResult(w.key, w.job_id, "completed", 0, entry.task_id, files=tuple(o.path for o in saved))


async def redownload(ctx: RunContext, w: Work, task_id: str, billed: int) -> JobResult:
    """A completed (paid) job whose files are missing: fetch them again by task id, for nothing."""
    try:
        view = await ctx.api.get_task(task_id)
        saved, writes = await save_outputs(ctx, w, view, billed)
    except (DownloadFailed, ApiError) as exc:
        return JobResult(w.key, w.job_id, "failed", 0, task_id, f"download failed again: {exc}")
    await ctx.journal.write_files(writes)
    await ctx.record(DoneRecord(w.key, w.job_id, task_id, "completed", 0, None, tuple(saved),
                                raw_output=view.output, redownload=True))
    return JobResult(w.key, w.job_id, "completed", 0, task_id, files=tuple(o.path for o in saved))
