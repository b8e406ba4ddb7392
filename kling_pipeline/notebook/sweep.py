"""Running and collecting a sweep from Python, synchronously or in an event loop you already have.

``run_sweep(recipe_or_plan, emulator=True)`` is ``kling-pipeline run RECIPE --emulator``:
the same output directory, manifest, budget cap and resume. In Jupyter (whose event loop is
already running) use ``await run_sweep_async(...)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import anyio

from ..api.client import Secret
from ..config.connection import resolve_connection
from ..core.errors import KlingError, UsageError
from ..core.loading import RecipeSource
from ..core.money import parse_usd
from ..core.planning import Plan, plan, plan_file
from ..core.recipe import Recipe
from ..run.history import RunEnding
from ..run.options import Mode, RunOptions
from ..run.session import git_provenance, prepare, run_plan
from ..store.cache import default_root
from ..store.journal import MANIFEST_NAME, read_records
from ..store.state import ManifestState
from ..views.history import RunEntry, run_history
from ..views.status import Status, compute_status
from .events import CallbackEvents, ProgressCallback
from .results import RunResult, outcomes

__all__ = ["collect", "collect_async", "history", "run_sweep", "run_sweep_async", "status"]

Target = Plan | Recipe | RecipeSource


def _plan_of(target: Target, only: Mapping[str, Any] | None, budget: str | float | None,
             out_dir: str | os.PathLike[str] | None) -> Plan:
    cap = None
    if budget is not None:
        try:
            cap = parse_usd(str(budget))
        except ValueError as exc:
            raise UsageError(f"budget: {exc}") from None
    if isinstance(target, Plan):
        if only or cap is not None or out_dir is not None:
            raise UsageError("only, budget and out_dir go with a recipe; a plan has them already (plan(recipe, ...))")
        return target
    if isinstance(target, Recipe):
        return plan(target, only=only, budget_usd=cap, out_dir=out_dir)
    return plan_file(target, only=only, budget_usd=cap, out_dir=out_dir)


@contextlib.contextmanager
def _endpoint(emulator: bool, profile: str | None, base_url: str | None, key: str | None) -> Iterator[
        tuple[str, Secret, Any]]:
    """``(base_url, key, profile)``: a bundled emulator for the call, or the service by the
    command line's rule (``config.connection``) with ``key`` first when given."""
    if emulator:
        if base_url or key or profile:
            raise UsageError("emulator=True starts its own emulator: leave base_url, key and profile out")
        from ..emulator import EmulatorConfig, EmulatorServer, Latency

        with EmulatorServer(EmulatorConfig(latency=Latency.uniform(0.5, 1.5))) as emu:
            yield emu.base_url, Secret("emulator-key"), None
        return
    conn = resolve_connection(os.environ, profile=profile, base_url=base_url,
                              key=None if key is None else Secret(key),
                              hint=", or pass emulator=True to try the sweep against the bundled emulator")
    yield conn.base_url, conn.key, conn.profile


def _options(p: Plan, mode: Mode, profile: Any, concurrency: int | None, rate: float | None,
             retry_failed: bool, retry_unknown: bool, cache: bool) -> RunOptions:
    n = concurrency if concurrency is not None else p.recipe.concurrency
    if concurrency is None and profile is not None and profile.concurrency is not None:
        n = min(n, profile.concurrency)
    if not 1 <= n <= 4096:
        raise UsageError(f"concurrency must be between 1 and 4096, got {n}")
    if rate is not None and not rate > 0:
        raise UsageError(f"rate must be a number of submits per second > 0, got {rate}")
    rate = rate if rate is not None else profile.rate if profile is not None else None
    return RunOptions(concurrency=n, rate=rate, retry_failed=retry_failed, retry_unknown=retry_unknown,
                      webhook=p.recipe.webhook, mode=mode, cache=str(default_root()) if cache else None)


def _words(call: str, p: Plan, given: Mapping[str, Any]) -> list[str]:
    return ["python", call, p.recipe.file, *(f"{k}={v}" for k, v in given.items() if v not in (None, False))]


async def _run(target: Target, mode: Mode, *, emulator: bool, profile: str | None, base_url: str | None,
               key: str | None, only: Mapping[str, Any] | None, budget: str | float | None,
               out_dir: str | os.PathLike[str] | None, concurrency: int | None, rate: float | None,
               retry_failed: bool, retry_unknown: bool, on_progress: ProgressCallback | None,
               report: bool, cache: bool) -> RunResult:
    p = _plan_of(target, only, budget, out_dir)
    if mode == "detach" and emulator:
        raise UsageError("detach=True with emulator=True leaves tasks that nothing can collect: the emulator stops "
                         "when the call returns")
    given = {"only": only, "budget": budget, "concurrency": concurrency, "rate": rate, "profile": profile,
             "retry_failed": retry_failed, "retry_unknown": retry_unknown, "emulator": emulator,
             "no_cache": not cache}
    with _endpoint(emulator, profile, base_url, key) as (url, secret, prof):
        options = _options(p, mode, prof, concurrency, rate, retry_failed, retry_unknown, cache)
        p.output_dir.mkdir(parents=True, exist_ok=True)
        events = CallbackEvents(p, on_progress, len(prepare(p, options)[1].work))
        provenance = {"recipe": p.recipe.file, "git": git_provenance(list(p.recipe.sources))}
        summary = await run_plan(p, base_url=url, key=secret, options=options, events=events,
                                 provenance=provenance, ending=RunEnding.of(_words(f"{mode}_sweep", p, given)))
    events.raise_callback_error()
    if summary.fatal is not None:
        raise summary.fatal
    report_path = None
    if report and summary.decision is not None and not summary.decision.nothing_to_do \
            and summary.stop_reason != "interrupted":
        report_path = _report(p)
    state = ManifestState.replay(read_records(p.output_dir / MANIFEST_NAME))
    ledger = summary.ledger
    return RunResult(
        jobs=outcomes(p, state, summary), out_dir=p.output_dir, manifest=p.output_dir / MANIFEST_NAME,
        stop_reason=summary.stop_reason or None, spent=summary.spent_this_run, settled=state.settled,
        reserved=state.reserved, cap=ledger.cap if ledger is not None else p.budget_microcents,
        not_run_cost=summary.not_run_cost, report=report_path)


def _report(p: Plan) -> Path | None:
    from ..views.report import write_report

    try:
        if p.filtered_out:  # the gallery shows the whole sweep, not the slice run
            p = plan_file(p.recipe.file, out_dir=p.output_dir, budget_usd=p.budget_microcents)
        return write_report(p.output_dir, p).index
    except (KlingError, OSError):
        return None  # a report is a view: the run's outcome stands without it


def _sync(target: Target, mode: Mode, kw: dict[str, Any]) -> RunResult:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise UsageError("an event loop is already running in this thread (Jupyter, IPython): "
                         f"use `await {'collect' if mode == 'collect' else 'run_sweep'}_async(...)` instead")

    async def main() -> RunResult:
        return await _run(target, mode, **kw)

    return anyio.run(main)


def _kw(emulator: bool = False, profile: str | None = None, base_url: str | None = None, key: str | None = None,
        only: Mapping[str, Any] | None = None, budget: str | float | None = None,
        out_dir: str | os.PathLike[str] | None = None, concurrency: int | None = None, rate: float | None = None,
        retry_failed: bool = False, retry_unknown: bool = False, on_progress: ProgressCallback | None = None,
        report: bool = True, cache: bool = True) -> dict[str, Any]:
    return dict(locals())


def run_sweep(target: Target, *, detach: bool = False, **kw: Any) -> RunResult:
    """Run a sweep (a ``Plan``, a ``Recipe``, a recipe's path, YAML text or mapping) and wait for it.

    Keywords: ``emulator`` (start the bundled emulator for this call), ``profile``, ``base_url``,
    ``key`` (else the command line's rule: ``$INFERENCE_API_KEY``, key files, profiles);
    ``only``, ``budget`` (USD), ``out_dir`` (with a recipe); ``concurrency``, ``rate``,
    ``retry_failed``, ``retry_unknown``, ``detach``, ``cache`` (the shared result cache, default
    True: ``--no-cache`` is ``cache=False``); ``on_progress`` (called with a ``Progress``;
    an exception it raises is raised again once the run has ended cleanly); ``report``
    (write report.html, default True). A fatal error (a refused key, a missing app version)
    is raised once the run has stopped; a budget stop is ``result.stop_reason == "budget"``.
    """
    return _sync(target, "detach" if detach else "run", _kw(**kw))


async def run_sweep_async(target: Target, *, detach: bool = False, **kw: Any) -> RunResult:
    """``run_sweep`` in the running event loop (``await`` it in Jupyter)."""
    return await _run(target, "detach" if detach else "run", **_kw(**kw))


def collect(target: Target, **kw: Any) -> RunResult:
    """Follow what a detached run submitted, download and settle it (``kling-pipeline collect``)."""
    return _sync(target, "collect", _kw(**kw))


async def collect_async(target: Target, **kw: Any) -> RunResult:
    return await _run(target, "collect", **_kw(**kw))


def _manifest_of(target: Target | os.PathLike[str], out_dir: str | os.PathLike[str] | None
                 ) -> tuple[Plan | None, Path]:
    if isinstance(target, str | os.PathLike) and Path(target).is_dir():
        return None, Path(target)
    p = _plan_of(target, None, None, out_dir)
    return p, p.output_dir


def status(target: Target, *, out_dir: str | os.PathLike[str] | None = None) -> Status:
    """Where a sweep stands (``kling-pipeline status``): counts per state, spend against the
    cap, what a resume would do and cost, the last runs. ``target``: a plan, a recipe, or an
    output directory."""
    p, where = _manifest_of(target, out_dir)
    records = read_records(where / MANIFEST_NAME)
    return compute_status(where, ManifestState.replay(records), p, run_history(records))


def history(target: Target, *, out_dir: str | os.PathLike[str] | None = None) -> list[RunEntry]:
    """Every run of the sweep's output directory (``kling-pipeline runs``), oldest first."""
    _p, where = _manifest_of(target, out_dir)
    return run_history(read_records(where / MANIFEST_NAME))


