"""``validate`` and ``plan``: everything that happens before a cent is spent."""

from __future__ import annotations

import argparse
import gc
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from ..core.errors import RecipeError, UsageError
from ..core.jobs import Job
from ..core.money import format_usd, parse_usd
from ..core.planning import Plan, parse_only, plan_file
from ..views.planview import VALIDATE_FORMAT, plan_summary, validate_entry, warning_lines, write_plan_json
from ._exit import EXIT_BUDGET, EXIT_FAILED, EXIT_INVALID, EXIT_OK, report

__all__ = ["cmd_plan", "cmd_validate", "gc_paused", "make_plan", "plan_for_cli"]


def budget_arg(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_usd(text)
    except ValueError as exc:
        raise UsageError(f"--budget: {exc}") from None


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector paused: a plan is many small objects and no cycles, and
    collecting them costs about a fifth of the time at 100,000 jobs, while the plan is
    built and again while it is printed. The command may decide that for its process;
    the library function does not.

    What was made meanwhile then joins the oldest generation as it is (``freeze`` and
    ``unfreeze`` move it there without a pass over it): the plan lives as long as the
    command, and the first collection after the pause would otherwise go over all of it."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.freeze()
            gc.unfreeze()
            gc.enable()


def plan_for_cli(path: str, **options: Any) -> Plan:
    """``plan_file`` as the command line runs it: with the garbage collector paused."""
    with gc_paused():
        return plan_file(path, **options)


def _limits(args: argparse.Namespace) -> dict[str, Any]:
    max_jobs = getattr(args, "max_jobs", None)  # --max-jobs, where the command has it
    return {} if max_jobs is None else {"max_jobs": max_jobs}


def make_plan(args: argparse.Namespace) -> Plan:
    """Load and plan the recipe named on the command line (shared by plan/run/status)."""
    only = parse_only(getattr(args, "only", []) or [])
    budget = budget_arg(getattr(args, "budget", None))
    plan = plan_for_cli(args.recipe, only=only, budget_usd=budget, out_dir=getattr(args, "out", None),
                        max_job_usd=getattr(args, "max_job_usd", None), **_limits(args))
    shard = getattr(args, "shard", None)
    if shard is None:  # (the output directory's modules are not needed to plan)
        return plan
    from ..store.sharding import parse_shard, shard_plan

    return shard_plan(plan, parse_shard(shard), budget)


def cmd_validate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    code = EXIT_OK
    entries = []
    for path in args.recipes:
        try:
            p = plan_for_cli(path, **_limits(args))
        except RecipeError as exc:
            if args.json:
                entries.append(validate_entry(path, error=exc))
                code = EXIT_INVALID
            else:
                code = max(code, report(exc, err))
            continue
        if args.json:
            entries.append(validate_entry(p.recipe.file, p))
            continue
        for line in warning_lines(p.warnings):
            err.write(line + "\n")
        out.write(f"{p.recipe.file}: ok — {len(p.jobs):,} job{'s' if len(p.jobs) != 1 else ''}, "
                  f"{format_usd(p.total_cost)}\n")
    if args.json:
        doc = {"format": VALIDATE_FORMAT, "valid": code == EXIT_OK, "recipes": entries}
        out.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    return code if code in (EXIT_OK, EXIT_INVALID) else EXIT_INVALID


def cmd_plan(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    with gc_paused():  # the plan, and its text or JSON
        p = make_plan(args)
        for line in warning_lines(p.warnings):
            err.write(line + "\n")
        served = None if args.no_cache else _served_by_cache(p)
        if args.json:
            write_plan_json(p, out, requests=not args.no_requests,
                            cached=None if served is None else frozenset(j.key for j in served))
        else:
            for line in plan_summary(p, rows=max(1, args.rows)):
                out.write(line + "\n")
            if served:
                out.write(_cache_line(served) + "\n")
    if args.check_prices and not _prices_agree(args, p, err):
        return EXIT_FAILED
    return EXIT_BUDGET if p.over_budget else EXIT_OK


def _served_by_cache(p: Plan) -> list[Job]:
    """The jobs not done in this output directory yet that the shared result cache will serve."""
    from ..store.cache import ResultCache, default_root
    from ..store.journal import MANIFEST_NAME, read_records
    from ..store.state import ManifestState

    keys = ResultCache(default_root()).keys()
    if not keys:
        return []
    done = {j.key for j in ManifestState.replay(read_records(p.output_dir / MANIFEST_NAME)) if j.state == "completed"}
    return [j for j in p.jobs if j.key in keys and j.key not in done]


def _cache_line(served: list[Job]) -> str:
    """How many jobs the shared result cache will serve, and what that saves."""
    saved = format_usd(sum(j.cost for j in served))
    return (f"  cache: {len(served):,} job{'s' if len(served) != 1 else ''} will be served from the shared cache of "
            f"paid results ({saved} saved; run --no-cache to pay for them again)")


def _prices_agree(args: argparse.Namespace, p: Plan, err: TextIO) -> bool:

    from ..api.client import ClientPool
    from ..api.pricecheck import check_prices
    from ._backend import backend, run_async

    with backend(args, err) as (base_url, key):

        async def main() -> list[Any]:
            async with ClientPool(base_url, key, 1) as pool:
                return await check_prices(p, pool.api)

        checks = run_async(main)
    for check in checks:
        err.write(check.line() + "\n")
    if not all(c.agrees for c in checks):
        err.write(f"the price table of {p.app.name} disagrees with the service: pull it again (`kling-pipeline "
                  f"schema pull {p.app.name}`), or give price.usd_per_unit in the recipe\n")
        return False
    return True
