"""One job's life, by what the run has to do for it: submit, re-attach, reconcile or fetch again.

The steps live beside: ``submit`` (reserve, stage, send, reconcile a lost answer) and
``follow`` (follow the task to its end, settle, save the outputs).
"""

from __future__ import annotations

import time

from .context import RunContext
from .follow import finish, from_cache, redownload
from .outcome import JobResult
from .reconciler import PROOF_MARGIN
from .submit import reconcile, submit
from .work import Action, Work

__all__ = ["run_work"]


async def run_work(ctx: RunContext, w: Work) -> JobResult:
    """Do one ``Work`` item to its end (or until cancelled)."""
    ctx.events.started(w)
    state = w.state
    if w.action is Action.REDOWNLOAD:
        assert state is not None and state.task_id
        return await redownload(ctx, w, state.task_id, state.billed)
    if w.action is Action.FROM_CACHE:
        served = await from_cache(ctx, w)
        if served is not None:
            return served  # else: the entry was gone or damaged: send the job like any other
    attempt = (state.attempts if state else 0) + 1
    if w.action is Action.REATTACH:
        assert state is not None and state.task_id
        ctx.claimed.add(state.task_id)
        return await finish(ctx, w, state.task_id, state.reserved, state.attempts)
    if w.action is Action.RECONCILE:
        assert state is not None and state.intent is not None
        # An intent of an earlier run, whose process has ended (this one holds the lock it held):
        # any task this run sends comes after it. The listing has had the time since it was written.
        now, left = ctx.reconciler.now(), state.intent.at + ctx.options.reconcile_window - time.time()
        got = await reconcile(ctx, w, state.intent.input, reserved=state.reserved, attempt=state.attempts,
                              lost_at=now - PROOF_MARGIN, deadline=now + max(0.0, left), intent_at=state.intent.at)
        if isinstance(got, JobResult):
            if got.status == "unknown" and w.retry_unknown and w.job is not None:
                sent = await submit(ctx, w, attempt)
                return sent if isinstance(sent, JobResult) else await finish(ctx, w, sent, w.cost, attempt)
            return got
        return await finish(ctx, w, got, state.reserved or w.cost, attempt)
    sent = await submit(ctx, w, attempt)
    if isinstance(sent, JobResult):
        return sent
    if ctx.options.mode == "detach":
        return JobResult(w.key, w.job_id, "submitted", task_id=sent)
    return await finish(ctx, w, sent, w.cost, attempt)
