"""A whole run: lock the output directory, replay the manifest, decide, schedule, summarise.

Scheduling is one anyio task group: a slot pool of size ``concurrency``, the
key's ``Pacing`` (one queue per limit class of the service, learning its rate
limits; ``--rate`` caps submits), and a signal watcher. The first Ctrl-C (or SIGTERM) stops
submitting and drains in-flight tasks for up to ``drain_timeout`` (or cancels
them with ``cancel_inflight``); a second one cancels everything at once. The
manifest is append-only; an intent is fsync'd before its request leaves and the
other records follow without waiting, so any stop leaves a manifest a resume
can trust (see ``manifest.Journal``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from .. import __version__
from ..api.apierrors import ApiError
from ..api.client import ClientPool, Secret
from ..api.pacing import Pacing
from ..api.preflight import check_app
from ..core.errors import KlingError
from ..core.planning import Plan
from ..store.manifest import LOCK_NAME, MANIFEST_NAME, Journal, ManifestState, OutputLock, read_records
from .budget import BudgetLedger, LedgerSnapshot
from .context import Events, RunContext, RunOptions
from .runner import JobResult, run_work, stage, unstage
from .work import Action, Decision, Work, decide

__all__ = ["RunSummary", "git_provenance", "prepare", "run_plan"]


@dataclass(slots=True)
class RunSummary:
    results: list[JobResult] = field(default_factory=list)
    decision: Decision | None = None
    ledger: LedgerSnapshot | None = None
    stop_reason: str = ""
    fatal: BaseException | None = None
    not_run_cost: int = 0
    manifest: Path | None = None

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def spent_this_run(self) -> int:
        return sum(r.cost for r in self.results)


def git_provenance(files: list[str]) -> dict[str, Any] | None:
    """The commit of the repository holding the recipe, and whether the recipe files differ from it."""
    if not files:
        return None
    where = os.path.dirname(os.path.abspath(files[0]))
    try:
        head = subprocess.run(["git", "-C", where, "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=False)
        if head.returncode != 0:
            return None
        status = subprocess.run(["git", "-C", where, "status", "--porcelain", "--",
                                 *[os.path.abspath(f) for f in files]],
                                capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def prepare(plan: Plan, options: RunOptions, manifest: str = MANIFEST_NAME) -> tuple[ManifestState, Decision, Path]:
    """Read the manifest (without locking) and decide what a run would do."""
    path = plan.output_dir / manifest
    state = ManifestState.replay(read_records(path))
    decision = decide(plan, state, retry_failed=options.retry_failed, retry_unknown=options.retry_unknown,
                      reconcile=options.reconcile, mode=options.mode)
    return state, decision, path


async def _drain(ctx: RunContext, workers: anyio.CancelScope, options: RunOptions) -> None:
    """After the first interrupt: cancel in-flight tasks if asked, wait for them a bounded time."""
    if options.cancel_inflight:
        for task_id, api in list(ctx.inflight.items()):
            try:
                await api.cancel(task_id)
            except ApiError:
                pass  # it may have finished meanwhile; its stream will tell
    with anyio.move_on_after(options.drain_timeout):
        while ctx.inflight:
            await ctx.inflight_changed.wait()
        return
    workers.cancel()  # still running after the drain time: they stay in the manifest, re-attached next run


async def _watch_signals(ctx: RunContext, workers: anyio.CancelScope, options: RunOptions,
                         tg: anyio.abc.TaskGroup) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            if ctx.interrupted:
                workers.cancel()  # second Ctrl-C: quit now; the manifest is consistent at every record
                return
            ctx.interrupted = True
            ctx.stop("interrupted")
            tg.start_soon(_drain, ctx, workers, options)


async def _schedule(ctx: RunContext, work: list[Work], summary: RunSummary, options: RunOptions) -> None:
    send, receive = anyio.create_memory_object_stream[int](options.concurrency)
    for slot in range(options.concurrency):
        send.send_nowait(slot)

    def done(w: Work, result: JobResult) -> None:
        summary.results.append(result)
        if result.status == "not_run" and w.action is Action.SUBMIT:
            summary.not_run_cost += w.cost
        ctx.events.finished(w, result)

    async def one(w: Work, slot: int) -> None:
        result = JobResult(w.key, w.job_id, "interrupted")
        freed = False

        def free() -> None:  # the slot is a task at the service: free it once the task has ended
            nonlocal freed
            if not freed:
                freed = True
                send.send_nowait(slot)

        ctx.task_ended_hooks[w.key] = free
        ctx.job_started(w.key)
        try:
            result = await run_work(ctx, slot, w)
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
            ctx.task_ended_hooks.pop(w.key, None)
            ctx.download_done(w.key)
            ctx.job_ended(w.key)
            done(w, result)
            free()

    stager = _Stager(ctx, [w for w in work if w.action is Action.SUBMIT],
                     min(LOOKAHEAD, options.concurrency) if options.mode != "collect" else 0)
    with send, receive:
        try:
            async with anyio.create_task_group() as outer:
                async with anyio.create_task_group() as workers:
                    outer.start_soon(_watch_signals, ctx, workers.cancel_scope, options, outer)
                    outer.start_soon(stager.run)
                    for w in work:
                        slot = await receive.receive()
                        ended = await stager.take(w)
                        if ended is None and _held_back(ctx, w):
                            ended = (await unstage(ctx, w, f"stopped: {ctx.stop_reason}") if w.key in ctx.staged
                                     else JobResult(w.key, w.job_id, "not_run", error=ctx.stop_reason))
                            ctx.staged.pop(w.key, None)
                            ctx.job_ended(w.key)
                        if ended is not None:
                            send.send_nowait(slot)
                            done(w, ended)
                            continue
                        workers.start_soon(one, w, slot)
                outer.cancel_scope.cancel()
        finally:
            stager.abandon()


def _held_back(ctx: RunContext, w: Work) -> bool:
    """After a stop, ``w`` is not started — except, at a budget stop, a job whose money is
    already reserved (staged) or one that submits nothing (re-attach, reconcile, re-download)."""
    if not ctx.stopping.is_set():
        return False
    if ctx.stop_reason == "budget":
        return w.action is Action.SUBMIT and w.key not in ctx.staged
    return True


LOOKAHEAD = 64


class _Stager:
    """Stages submits ahead of free slots: money reserved, files uploaded, intent fsync'd,
    so a freed slot sends its next request at once. At most ``depth`` jobs are staged and
    not yet started; their intents share fsyncs. A staged job never started (a stop, a
    crash) gives its money back here, or is reconciled by the next run like any intent."""

    def __init__(self, ctx: RunContext, submits: list[Work], depth: int) -> None:
        self.ctx = ctx
        self.submits = submits
        self.depth = depth
        self.ready: dict[str, anyio.Event] = {}
        self.ended: dict[str, JobResult] = {}
        self.room = anyio.Semaphore(max(1, depth))

    async def run(self) -> None:
        """Reserve money in plan order (so a later job never holds what an earlier one, which the
        scheduler starts first, waits for), then upload and write intents concurrently."""
        if not self.depth:
            return
        ctx = self.ctx
        async with anyio.create_task_group() as tg:
            for i, w in enumerate(self.submits):
                await self.room.acquire()
                event = self.ready.setdefault(w.key, anyio.Event())
                if not ctx.stopping.is_set():
                    ctx.job_started(w.key)
                    if await ctx.reserve(w.cost):
                        tg.start_soon(self._stage, w)
                        continue
                    if not ctx.stopping.is_set():
                        ctx.stop("budget")
                    self.ended[w.key] = JobResult(w.key, w.job_id, "not_run", error="budget")
                    ctx.job_ended(w.key)
                    event.set()
                for rest in self.submits[i + 1 if w.key in self.ended else i:]:  # the scheduler decides
                    self.ready.setdefault(rest.key, anyio.Event()).set()
                return

    async def _stage(self, w: Work) -> None:
        ctx = self.ctx
        try:
            got = await stage(ctx, ctx.pool.api(0), w, (w.state.attempts if w.state else 0) + 1, reserved=True)
        except ApiError as exc:
            ctx.release(w.cost)
            got = JobResult(w.key, w.job_id, "failed", error=str(exc))
        if isinstance(got, JobResult):
            self.ended[w.key] = got
            ctx.job_ended(w.key)
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
        """Staged jobs left unsent (the run was cancelled): money back, a record saying so."""
        for key in list(self.ctx.staged):
            staged = self.ctx.staged.pop(key)
            self.ctx.release(staged.reserved)
            with contextlib.suppress(KlingError):
                self.ctx.journal.post({"t": "not_created", "key": key, "reason": "never sent: the run stopped"})


async def run_plan(plan: Plan, *, base_url: str, key: Secret, options: RunOptions, events: Events,
                   transport: Any = None, provenance: Mapping[str, Any] | None = None,
                   manifest: str = MANIFEST_NAME, lock: str = LOCK_NAME) -> RunSummary:
    """Run ``plan`` against the API at ``base_url``. The caller holds no lock; this takes it."""
    out_dir = plan.output_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = RunSummary()
    with OutputLock(out_dir, lock):
        path = out_dir / manifest
        state = ManifestState.replay(read_records(path, repair=True), slim=True)
        decision = decide(plan, state, retry_failed=options.retry_failed, retry_unknown=options.retry_unknown,
                          reconcile=options.reconcile, mode=options.mode)
        summary.decision = decision
        summary.manifest = path
        ledger = BudgetLedger(plan.budget_microcents, settled=state.settled, reserved=state.reserved)
        if decision.nothing_to_do:
            summary.ledger = ledger.snapshot()
            return summary
        run_id = uuid.uuid4().hex[:12]
        prov = dict(provenance or {})
        prov.setdefault("tool", f"kling-pipeline {__version__}")
        pacing = Pacing(options.rate, on_change=events.pacing)
        events.attach(ledger.snapshot, pacing)
        async with ClientPool(base_url, key, options.concurrency, transport=transport, pacing=pacing) as pool:
            if any(w.action is Action.SUBMIT for w in decision.work):  # one read before anything is paid
                await check_app(pool.api(0), plan.recipe.app, plan.recipe.app_pos)
            journal = Journal(path)
            try:
                ctx = RunContext(plan=plan, pool=pool, journal=journal, manifest=state, ledger=ledger,
                                 options=options, events=events, provenance=prov,
                                 run_id=run_id, claimed=state.claimed_task_ids(),
                                 webhook_token=state.webhook_token or secrets.token_urlsafe(24))
                await ctx.record({"t": "run", "run": run_id, "recipe": plan.recipe.file,
                                  "recipe_path": os.path.abspath(plan.recipe.file),  # noqa: ASYNC240
                                  "sources": list(plan.recipe.sources), "git": prov.get("git"),
                                  "app": str(plan.recipe.app), "cap_microcents": plan.budget_microcents,
                                  "tool": prov["tool"], "pid": os.getpid(), "at": time.time(),
                                  "mode": options.mode,
                                  "webhook_token": ctx.webhook_token if options.webhook else None})
                await _schedule(ctx, decision.work, summary, options)
                summary.stop_reason = ctx.stop_reason
                summary.fatal = ctx.fatal
            finally:
                journal.close()
        summary.ledger = ledger.snapshot()
    return summary
