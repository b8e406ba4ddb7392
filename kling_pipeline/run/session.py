"""Opening a run on an output directory — the one way ``run``, ``collect`` and the webhook
receiver do it — and a whole run: lock, replay, decide, pre-flight, schedule, summarise.

``OpenRun`` takes the directory's lock (waiting for it a bounded time when asked),
replays the manifest and decides what there is to do; ``start`` opens the journal and
builds the run's ``RunContext`` from its parts (writing the ``run`` record unless the
caller is the receiver, which only collects). Only intents are fsync'd before their
request leaves; every other record follows without waiting (see ``store.journal``).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import secrets
import subprocess
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import anyio.to_thread

from .. import __version__
from ..api.client import ApiClient, ClientPool, Secret
from ..api.pacing import Pacing
from ..api.preflight import check_app
from ..core.outputs import OutputSpec
from ..core.planning import Plan
from ..core.recipe import Recipe
from ..store.cache import ResultCache
from ..store.journal import MANIFEST_NAME, Journal, read_records
from ..store.lock import LOCK_NAME, LockError, OutputLock
from ..store.records import RunRecord
from ..store.state import ManifestState
from .budget import BudgetLedger
from .chain import Chain, StageRun
from .context import Recorder, RunContext
from .events import Events
from .gate import BudgetGate
from .options import RunOptions
from .outcome import RunSummary
from .pipeline import Downstream, stage_tally
from .reconciler import Reconciler
from .scheduler import schedule
from .slots import Slots
from .stop import Stop
from .uploads import Uploader
from .work import Action, Decision, decide

__all__ = ["OpenRun", "decide_run", "git_provenance", "prepare", "run_plan", "stage_runs"]


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
    return state, _decide(plan, state, options, _chain(plan, options))[0], path


def decide_run(plan: Plan, state: ManifestState, options: RunOptions) -> tuple[Decision, Downstream | None]:
    """What a run would do (for ``status``): for a pipeline, with its downstream jobs as far as
    their inputs exist, and the chain that knows which (``Downstream.chain``)."""
    return _decide(plan, state, options, _chain(plan, options))


def stage_runs(plan: Plan) -> dict[str, StageRun]:
    """Each stage's app, prices and outputs ("" for a one-stage recipe)."""
    if not plan.stages:
        outputs = OutputSpec.from_schema(plan.app.output_schema)
        return {"": StageRun("", str(plan.recipe.app), plan.app.pricing, outputs)}
    return {sp.name: StageRun(sp.name, str(sp.plan.recipe.app), sp.plan.app.pricing, sp.outputs)
            for sp in plan.stages}


def _chain(plan: Plan, options: RunOptions) -> Chain | None:
    return Chain(plan, stage_runs(plan), url_ttl=options.upstream_url_ttl) if plan.stages else None


def _decide(plan: Plan, state: ManifestState, options: RunOptions,
            chain: Chain | None) -> tuple[Decision, Downstream | None]:
    """What a run does with each job; for a pipeline, with the downstream jobs of those done
    already, and what decides the others' as their upstream jobs complete."""
    cached = ResultCache(Path(options.cache)).keys() if options.cache else set()
    decide_ = functools.partial(decide, plan, retry_failed=options.retry_failed, retry_unknown=options.retry_unknown,
                                reconcile=options.reconcile, mode=options.mode,
                                provider_retries=options.provider_retries, cached=cached)
    if chain is None:
        return decide_(state), None
    decision = decide_(state, jobs=[j for _, jobs in chain.roots() for j in jobs])
    stage_of = chain.stage_of  # the root stages' jobs (a job the recipe no longer has keeps its intent's)
    decision.work = [dataclasses.replace(w, stage=stage_of[w.key]) if w.key in stage_of else w for w in decision.work]
    decision.deferred = [dataclasses.replace(w, stage=stage_of[w.key]) if w.key in stage_of else w
                         for w in decision.deferred]
    downstream = Downstream(chain, state, decide_)
    downstream.start(decision)
    made = set(chain.real_keys())
    for sp in plan.stages:
        if sp.needs is not None:
            for job in sp.plan.jobs:
                if job.key not in made:
                    decision.waiting += 1
                    decision.waiting_cost += job.cost
    order = {Action.REATTACH: 0, Action.REDOWNLOAD: 1, Action.FROM_CACHE: 1, Action.RECONCILE: 2, Action.SUBMIT: 3}
    decision.work.sort(key=lambda w: order[w.action])
    return decision, downstream


class OpenRun:
    """``async with OpenRun(plan, options) as opened:`` — the directory locked, the manifest
    replayed (``opened.state``), the budget loaded (``opened.ledger``); ``opened.decide()``,
    then ``await opened.start(api, events)`` for the run's context."""

    def __init__(self, plan: Plan, options: RunOptions, *, manifest: str = MANIFEST_NAME, lock: str = LOCK_NAME,
                 lock_wait: float = 0.0) -> None:
        self.plan, self.options = plan, options
        self.path = plan.output_dir / manifest
        self._lock = OutputLock(plan.output_dir, lock)
        self._lock_wait = lock_wait
        self._journal: Journal | None = None
        self.state = ManifestState()
        self.ledger = BudgetLedger(plan.budget_microcents)
        self.chain = _chain(plan, options)
        self.downstream: Downstream | None = None

    async def __aenter__(self) -> OpenRun:
        self.plan.output_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self._lock_wait
        while True:
            try:
                self._lock.acquire()
                break
            except LockError:
                if time.monotonic() >= deadline:
                    raise
                await anyio.sleep(0.05)
        self.state = ManifestState.replay(read_records(self.path, repair=True), slim=True)
        self.ledger = BudgetLedger(self.plan.budget_microcents, settled=self.state.settled,
                                   reserved=self.state.reserved)
        return self

    def decide(self) -> Decision:
        decision, self.downstream = _decide(self.plan, self.state, self.options, self.chain)
        return decision

    async def start(self, api: ApiClient, events: Events, *, provenance: Mapping[str, Any] | None = None,
                    run_id: str | None = None, record_run: bool = True) -> RunContext:
        """Open the journal and build the run's context; write the ``run`` record if ``record_run``."""
        self._journal = Journal(self.path)
        stop = Stop()
        stop.listen(lambda reason, exc: events.stopping(reason, str(exc) if exc else ""))
        prov = dict(provenance or {})
        prov.setdefault("tool", f"kling-pipeline {__version__}")
        claimed = self.state.claimed_task_ids()
        chain = self.chain
        record = Recorder(self._journal, self.state, claimed, on_done=None if chain is None else chain.note)
        stages = stage_runs(self.plan)
        ctx = RunContext(plan=self.plan, options=self.options, api=api, journal=self._journal, state=self.state,
                         record=record, gate=BudgetGate(self.ledger, stop), stop=stop, events=events,
                         uploader=Uploader(api, self.state.uploads, record), slots=Slots(self.options.concurrency),
                         outputs=OutputSpec.from_schema(self.plan.app.output_schema),
                         reconciler=Reconciler(api, self.options, [s.app_ref for s in stages.values()], claimed,
                                               on_change=events.listing),
                         provenance=prov, run_id=run_id or uuid.uuid4().hex[:12],
                         webhook_token=self.state.webhook_token or secrets.token_urlsafe(24), claimed=claimed,
                         cache=ResultCache(Path(self.options.cache)) if self.options.cache else None,
                         stages=stages, chain=chain)
        if record_run:
            recipe = self.plan.recipe
            await ctx.record(RunRecord(
                ctx.run_id, recipe.file, os.path.abspath(recipe.file), tuple(recipe.sources),  # noqa: ASYNC240
                prov.get("git"), str(recipe.app), self.plan.budget_microcents, str(prov["tool"]), os.getpid(),
                self.options.mode, ctx.webhook_token if self.options.webhook else None))
        return ctx

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            if self._journal is not None:
                self._journal.close()
        finally:
            self._lock.release()


def _recipes(plan: Plan) -> list[Recipe]:
    return [sp.plan.recipe for sp in plan.stages] if plan.stages else [plan.recipe]


async def run_plan(plan: Plan, *, base_url: str, key: Secret, options: RunOptions, events: Events,
                   transport: Any = None, provenance: Mapping[str, Any] | None = None,
                   manifest: str = MANIFEST_NAME, lock: str = LOCK_NAME) -> RunSummary:
    """Run ``plan`` against the API at ``base_url``. The caller holds no lock; this takes it."""
    summary = RunSummary()
    async with OpenRun(plan, options, manifest=manifest, lock=lock) as opened:
        decision = summary.decision = opened.decide()
        opened.state.forget(s.key for s in decision.done)  # done and on disk: only their state is needed now
        summary.manifest = opened.path
        if not decision.nothing_to_do:
            pacing = Pacing(options.rate, on_change=events.pacing)
            events.attach(opened.ledger.snapshot, pacing)
            async with ClientPool(base_url, key, options.concurrency, transport=transport, pacing=pacing) as pool:
                if any(w.action is Action.SUBMIT for w in decision.work) or opened.chain is not None:
                    for recipe in {str(r.app): r for r in _recipes(plan)}.values():  # one read before anything is paid
                        await check_app(pool.api, recipe.app, recipe.app_pos)
                ctx = await opened.start(pool.api, events, provenance=provenance)
                await schedule(ctx, decision.work, summary, opened.downstream)
                summary.stop_reason, summary.fatal = ctx.stop.reason, ctx.stop.fatal
                if ctx.cache is not None:
                    await anyio.to_thread.run_sync(ctx.cache.evict)  # within its bound, oldest use first
        summary.ledger = opened.ledger.snapshot()
        if opened.chain is not None:
            summary.stages = stage_tally(opened.chain, opened.state)
    return summary
