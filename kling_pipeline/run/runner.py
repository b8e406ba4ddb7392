"""One job's life: reserve, submit (or re-attach, or reconcile), follow, download, settle.

Money rules, in order of importance:

* a request is re-sent only when the previous one provably created nothing
  (``created is False``); after a lost answer the job is ``unknown`` and is
  reconciled through the task listing, never re-sent blindly;
* every submit is preceded by a durable ``intent`` record and a reservation
  in the budget ledger; the reservation is settled at the billed amount,
  released when nothing ran, and kept (conservatively) when unknown.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from ..api.apierrors import ApiError, ConnectFailed, DownloadFailed, NotFound, RateLimited, ResponseLost, Unavailable
from ..api.client import ApiClient
from ..api.wire import Status, TaskView, billed_units
from ..core.errors import KlingError
from .context import RunContext
from .outputs import save_outputs
from .work import Action, Work

__all__ = ["JobResult", "run_work"]

PROVIDER_LIMIT_MARKERS = ("1303", "concurrency limit", "rate limit", "too many requests")


@dataclass(slots=True)
class JobResult:
    key: str
    job_id: str
    status: str  # completed | failed | cancelled | rejected | unknown | not_run | interrupted
    cost: int = 0  # billed (settled) in this run
    task_id: str | None = None
    error: str | None = None
    images: list[str] = field(default_factory=list)


def is_provider_limit(error: str | None) -> bool:
    text = (error or "").lower()
    return any(m in text for m in PROVIDER_LIMIT_MARKERS)


def _now() -> float:
    return time.time()


@dataclass(frozen=True, slots=True)
class Staged:
    """A job ready to send: its money reserved, its files uploaded, its intent on disk."""

    request: dict[str, Any]
    attempt: int
    reserved: int


async def stage(ctx: RunContext, api: ApiClient, w: Work, attempt: int, *,
                reserved: bool = False) -> Staged | JobResult:
    """Reserve the job's price (unless the caller did), upload its files, write its intent (fsync'd)."""
    assert w.job is not None
    if not reserved:
        if ctx.stopping.is_set():
            return JobResult(w.key, w.job_id, "not_run", error=ctx.stop_reason)
        if not await ctx.reserve(w.cost):
            ctx.stop("budget")
            return JobResult(w.key, w.job_id, "not_run", error="budget")
    try:
        request, files = await ctx.prepare_request(api, w.job)
    except ApiError as exc:
        ctx.release(w.cost)
        if exc.fatal:
            ctx.stop("fatal", exc)
        return JobResult(w.key, w.job_id, "failed", error=f"upload failed: {exc}")
    except (KlingError, OSError) as exc:  # a reference image changed or vanished since the plan
        ctx.release(w.cost)
        return JobResult(w.key, w.job_id, "failed", error=str(exc))
    await ctx.record(ctx.intent_record(w, request, files, attempt))
    return Staged(request, attempt, w.cost)


async def unstage(ctx: RunContext, w: Work, why: str) -> JobResult:
    """A staged job that will not be sent: give its money back, say so in the manifest."""
    ctx.release(w.cost)
    await ctx.record({"t": "not_created", "key": w.key, "reason": f"never sent: {why}"})
    return JobResult(w.key, w.job_id, "not_run", error=why)


async def _submit(ctx: RunContext, api: ApiClient, w: Work, attempt: int) -> str | JobResult:
    """Stage (unless the scheduler already did), then send. Returns the task id, or the
    job's result if it ended here."""
    staged = ctx.staged.pop(w.key, None)
    if staged is None:
        got = await stage(ctx, api, w, attempt)
        if isinstance(got, JobResult):
            return got
        staged = got
    return await _send(ctx, api, w, staged)


async def _send(ctx: RunContext, api: ApiClient, w: Work, staged: Staged) -> str | JobResult:
    """Send a staged job's request, in its turn of the runs pacer, until it creates a task.

    A 429 or a 503 created nothing: the job waits for its next turn, for as long as the run
    goes on — it is never a failure and costs no attempt. Unreachable: again, until
    ``connect_grace`` runs out. Anything else ends here (or in reconciliation)."""
    request, attempt = staged.request, staged.attempt
    runs = api.pacing.runs
    for tries in itertools.count():
        turn = await runs.acquire()
        with turn:
            # A budget stop does not hold back a job whose money is already reserved: it fits.
            if ctx.stopping.is_set() and ctx.stop_reason != "budget":  # nothing was sent for it
                turn.abandon()
                return await unstage(ctx, w, f"stopped: {ctx.stop_reason}")
            ctx.events.submitting(w, tries)
            try:
                try:
                    view = await api.submit(ctx.app_ref, request, ctx.webhook_for(w), turn=turn)
                except (ApiError, anyio.get_cancelled_exc_class()):
                    raise
                except Exception as exc:  # unmapped failure after the request may have left: unknown
                    raise ResponseLost(f"submit: unexpected {type(exc).__name__}: {exc}") from exc
            except ApiError as exc:
                if exc.created is None:  # the request may have created a task: never re-send blindly
                    lost_at = time.time()
                    await ctx.record({"t": "unknown", "key": w.key, "reason": str(exc), "at": lost_at})
                    ctx.events.unknown(w, str(exc))
                    return await _reconcile(ctx, api, w, request, lost_at, w.cost, attempt)
                if isinstance(exc, RateLimited):  # the turn's answer has already slowed the pacer down
                    ctx.events.throttled(w, exc, runs.gate_wait())
                    continue
                if isinstance(exc, Unavailable):
                    ctx.events.throttled(w, exc, runs.backoff(exc.retry_after))
                    continue
                if isinstance(exc, ConnectFailed):  # the service (or the network) is down for everybody
                    if ctx.unreachable_for() > ctx.options.connect_grace:
                        ctx.release(w.cost)
                        await ctx.record({"t": "not_created", "key": w.key, "reason": str(exc)})
                        ctx.stop("fatal", ApiError(f"{exc}; gave up after {ctx.options.connect_grace:g}s "
                                                   "without reaching the API"))
                        return JobResult(w.key, w.job_id, "not_run", error=str(exc))  # nothing was sent
                    runs.backoff(None)
                    continue
                ctx.release(w.cost)
                await ctx.record({"t": "not_created", "key": w.key, "reason": str(exc)})
                if exc.fatal:
                    ctx.stop("fatal", exc)
                return JobResult(w.key, w.job_id, "failed", error=str(exc))
        ctx.reachable()
        await ctx.record({"t": "accepted", "key": w.key, "task": view.id, "at": _now()})
        ctx.events.accepted(w, view.id)
        return view.id
    raise AssertionError("unreachable")  # pragma: no cover


def _input_matches(sent: Mapping[str, Any], seen: Any) -> bool:
    return isinstance(seen, dict) and all(k in seen and seen[k] == v for k, v in sent.items())


async def _find_task(ctx: RunContext, api: ApiClient, sent: Mapping[str, Any], since: float,
                     webhook: str | None) -> str | None:
    """The oldest listed task with this input (and webhook) that no job has claimed."""
    since_iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since - ctx.options.reconcile_margin))
    found: list[tuple[str, str]] = []
    cursor = None
    for _ in range(ctx.options.reconcile_pages):
        items, cursor = await api.list_tasks(since_iso, cursor)
        for task in items:
            tid = task.get("id")
            if not isinstance(tid, str) or tid in ctx.claimed or not _input_matches(sent, task.get("input")):
                continue
            if webhook and task.get("webhook") not in (None, webhook):
                continue
            app = str(task.get("app") or "")
            if app and app.split("@", maxsplit=1)[0] != ctx.app_ref.split("@")[0]:
                continue
            found.append((str(task.get("created_at") or ""), tid))
        if cursor is None:
            break
    if not found:
        return None
    tid = min(found)[1]
    ctx.claimed.add(tid)
    return tid


async def _reconcile(ctx: RunContext, api: ApiClient, w: Work, sent: Mapping[str, Any] | None, since: float,
                     reserved: int, attempt: int) -> str | JobResult:
    """Find the task a lost submit created (``sent`` at ``since``). Adopt it; or, once the
    listing has had time to catch up and shows nothing, release ``reserved`` and submit
    again: the request provably created nothing."""
    if not ctx.options.reconcile or sent is None:
        return _unknown(w, "submit answer lost; reconciliation is off (--retry-unknown re-sends)")
    deadline = since + ctx.options.reconcile_window
    delay = ctx.options.reconcile_poll
    while True:
        try:
            tid = await _find_task(ctx, api, sent, since, ctx.webhook_for(w))
        except ApiError as exc:
            return _unknown(w, f"submit answer lost and the task listing failed ({exc}); "
                               "run again to reconcile, or --retry-unknown to re-send")
        if tid is not None:
            await ctx.record({"t": "adopted", "key": w.key, "task": tid, "at": _now(), "how": "listing"})
            ctx.events.accepted(w, tid)
            return tid
        now = time.time()
        if now >= deadline:
            break
        await anyio.sleep(min(delay, deadline - now))
        delay = min(delay * 2, 10.0)
    ctx.release(reserved)
    window = f"{ctx.options.reconcile_window:g}s"
    if w.job is None:  # the recipe no longer has this job: nothing was created, nothing to do
        await ctx.record({"t": "not_created", "key": w.key, "reason": f"not in the task listing after {window}; "
                                                                      "no longer in the recipe"})
        return JobResult(w.key, w.job_id, "not_run", error="no longer in the recipe")
    await ctx.record({"t": "not_created", "key": w.key, "reason": f"not in the task listing {window} after the submit"})
    if ctx.options.mode == "collect":  # collect never sends anything: the next run does
        return JobResult(w.key, w.job_id, "not_run", error="its submit created no task; the next run sends it")
    ctx.events.resubmit(w)
    return await _submit(ctx, api, w, attempt + 1)


def _unknown(w: Work, reason: str) -> JobResult:
    return JobResult(w.key, w.job_id, "unknown", error=reason)


async def _wait_terminal(ctx: RunContext, api: ApiClient, w: Work, task_id: str) -> TaskView | JobResult:
    """Follow the stream; on idle, cut or error fall back to ``GET /tasks/{id}``; bounded in time."""
    deadline = time.monotonic() + ctx.options.task_timeout
    failures = 0
    while True:
        if failures < ctx.options.stream_attempts:
            try:
                async for view in api.follow(task_id):
                    ctx.events.progress(w, view)
                    if view.status.terminal:
                        return view
            except NotFound:
                return JobResult(w.key, w.job_id, "unknown", task_id=task_id, error=f"task {task_id} not found")
            except ApiError:
                pass
        try:
            view = await api.get_task(task_id)
            if view.status.terminal:
                return view
        except NotFound:
            return JobResult(w.key, w.job_id, "unknown", task_id=task_id, error=f"task {task_id} not found")
        except ApiError:
            pass
        failures += 1
        if time.monotonic() > deadline:
            return JobResult(w.key, w.job_id, "unknown", task_id=task_id,
                             error=f"task {task_id} not finished after {ctx.options.task_timeout:g}s; "
                                   "run again to re-attach")
        await anyio.sleep(min(10.0, 0.25 * 2 ** min(failures, 6)))


def _billed(ctx: RunContext, w: Work, view: TaskView, reserved: int) -> int:
    units = billed_units(view.task, ctx.pricing.unit)
    if view.status is Status.COMPLETED:
        return ctx.pricing.microcents_per_unit * (units if units is not None else w.units)
    if view.status is Status.REJECTED:
        return 0
    if units is not None:
        return ctx.pricing.microcents_per_unit * units
    if view.status is Status.FAILED and is_provider_limit(view.error):
        return 0  # the provider refused before running: billing happens on completion only
    return reserved  # failed/cancelled with no billing data: count it (conservative)


async def _finish(ctx: RunContext, api: ApiClient, w: Work, task_id: str, reserved: int,
                  attempt: int) -> JobResult:
    ctx.track(task_id, api)
    try:
        outcome = await _wait_terminal(ctx, api, w, task_id)
    finally:
        ctx.track(task_id, None)
    if isinstance(outcome, JobResult):
        return outcome
    view = outcome
    billed = _billed(ctx, w, view, reserved)
    if view.status is not Status.COMPLETED:
        ctx.settle(reserved, billed)
        await ctx.record({"t": "done", "key": w.key, "job": w.job_id, "task": task_id, "status": view.status.value,
                          "billed_microcents": billed, "error": view.error, "at": _now()})
        if view.status is Status.REJECTED:
            reason = view.error or "no reason given"
            ctx.stop("fatal", ApiError(f"task {task_id} was rejected by the service: {reason}"))
        if view.status is Status.FAILED and is_provider_limit(view.error) and w.job is not None \
                and attempt < ctx.options.provider_retries and not ctx.stopping.is_set():
            delay = api.pacing.runs.backoff(None, slower=True)
            ctx.events.throttled(w, ApiError(view.error or "provider limit"), delay)
            result = await _submit(ctx, api, w, attempt + 1)
            if isinstance(result, JobResult):
                return result
            return await _finish(ctx, api, w, result, w.cost, attempt + 1)
        return JobResult(w.key, w.job_id, view.status.value, billed, task_id, view.error)
    ctx.task_ended(w.key)
    try:
        saved, writes = await save_outputs(ctx, api, w, view, billed)
    except (DownloadFailed, ApiError) as exc:
        ctx.settle(reserved, billed)
        await ctx.record({"t": "done", "key": w.key, "job": w.job_id, "task": task_id, "status": "completed",
                          "billed_microcents": billed, "outputs": [], "download_pending": True,
                          "error": f"download failed: {exc}", "raw_output": view.output, "at": _now()})
        return JobResult(w.key, w.job_id, "failed", billed, task_id, f"paid, but the download failed: {exc}; "
                                                                      "run again to fetch it (no new charge)")
    ctx.settle(reserved, billed)
    await ctx.journal.write_files(writes)
    await ctx.record({"t": "done", "key": w.key, "job": w.job_id, "task": task_id, "status": "completed",
                      "billed_microcents": billed, "units": billed // max(1, ctx.pricing.microcents_per_unit),
                      "outputs": saved, "raw_output": view.output, "error": None, "at": _now()})
    return JobResult(w.key, w.job_id, "completed", billed, task_id, images=[o["path"] for o in saved])


async def run_work(ctx: RunContext, slot: int, w: Work) -> JobResult:
    """Do one ``Work`` item to its end (or until cancelled)."""
    api = ctx.pool.api(slot)
    ctx.events.started(w)
    state = w.state
    if w.action is Action.REDOWNLOAD:
        assert state is not None and state.task_id
        try:
            view = await api.get_task(state.task_id)
            saved, writes = await save_outputs(ctx, api, w, view, state.billed)
        except (DownloadFailed, ApiError) as exc:
            return JobResult(w.key, w.job_id, "failed", 0, state.task_id, f"download failed again: {exc}")
        await ctx.journal.write_files(writes)
        await ctx.record({"t": "done", "key": w.key, "job": w.job_id, "task": state.task_id, "status": "completed",
                          "billed_microcents": 0, "outputs": saved, "raw_output": view.output,
                          "redownload": True, "error": None, "at": _now()})
        return JobResult(w.key, w.job_id, "completed", 0, state.task_id, images=[o["path"] for o in saved])
    attempt = (state.attempts if state else 0) + 1
    if w.action is Action.REATTACH:
        assert state is not None and state.task_id
        ctx.claimed.add(state.task_id)
        return await _finish(ctx, api, w, state.task_id, state.reserved, state.attempts)
    if w.action is Action.RECONCILE:
        assert state is not None
        intent = state.intent
        sent = intent.get("input") if isinstance(intent.get("input"), dict) else None
        got = await _reconcile(ctx, api, w, sent, float(intent.get("at", time.time())), state.reserved,
                               state.attempts)
        if isinstance(got, JobResult):
            if got.status == "unknown" and w.retry_unknown and w.job is not None:
                got2 = await _submit(ctx, api, w, attempt)
                if isinstance(got2, JobResult):
                    return got2
                return await _finish(ctx, api, w, got2, w.cost, attempt)
            return got
        reserved = state.reserved if state is not None and state.reserved else w.cost
        return await _finish(ctx, api, w, got, reserved, attempt)
    got = await _submit(ctx, api, w, attempt)
    if isinstance(got, JobResult):
        return got
    if ctx.options.mode == "detach":
        return JobResult(w.key, w.job_id, "submitted", task_id=got)
    return await _finish(ctx, api, w, got, w.cost, attempt)
