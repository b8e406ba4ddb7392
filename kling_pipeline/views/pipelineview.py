"""How a pipeline's plan reads: the whole chain's totals and budget, then each stage on its
own (its app, what it takes from upstream, its jobs, units and cost, its axes).

Pure functions of a ``Plan`` with ``stages``; ``planview`` hands pipelines over to these.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..core.money import format_usd, usd_decimal
from ..core.planning import Plan, StagePlan
from ..core.schemas import service_limits
from .textrows import axis_rows, plural

__all__ = ["pipeline_summary", "stage_documents", "stage_of_job"]


def _takes(plan: Plan, sp: StagePlan) -> str:
    """``needs draft (each of its jobs x 2 combinations), where finish=glossy``."""
    if sp.needs is None or plan.pipeline is None:
        return ""
    stage = plan.pipeline.stage(sp.name)
    where = "; ".join(f"{w.axis}={'|'.join(sorted(w.labels))}" for w in stage.where)
    own = stage.recipe.matrix
    combos = own.size_hint() + len(own.include) if own.axes or own.include else 1
    per = f"each of its jobs x {plural(combos, 'combination')}" if combos > 1 else "each of its jobs"
    if sp.fan is not None:
        most = "" if sp.fan.billed else f", at most {sp.fan.most:,} a task"
        per = per.replace("each of its jobs", f"each file of its {sp.fan.field}{most}")
    if stage.recipe.repeat > 1:
        per += f" x repeat {stage.recipe.repeat}"
    return f"needs {sp.needs} ({per})" + (f", where {where}" if where else "")


def pipeline_summary(plan: Plan, rows: int, price_text: Any, budget_line: Any, rate_line: Any) -> Iterator[str]:
    """Lines of the human-readable plan of a pipeline (the one-stage helpers passed in)."""
    first = plan.recipe
    yield f"{first.file}: {first.name} — a pipeline of {plural(len(plan.stages), 'stage')}"
    low = plan.lowest_cost
    cost = format_usd(plan.total_cost) if low in (None, plan.total_cost) else \
        f"{format_usd(low)} to {format_usd(plan.total_cost)}"
    counted = sorted({"as billed" if sp.fan.billed else "at its maxItems" for sp in plan.stages if sp.fan})
    yield (f"  {plural(len(plan.jobs), 'job')} · {cost} in all" +
           (f" (at most: a list output fans out one job per file, counted {' or '.join(counted)})"
            if counted else ""))
    yield f"  {budget_line(plan)}"
    rate = rate_line(plan, service_limits())
    if rate:
        yield f"  {rate}"
    yield f"  output: {plan.output_dir} (a folder per stage)"
    for sp in plan.stages:
        p, unit = sp.plan, sp.plan.app.pricing.unit
        yield f"  stage {sp.name} — {p.recipe.app}" + (f" — {_takes(plan, sp)}" if sp.needs else "")
        yield f"    {plural(len(p.jobs), 'job')} · {plural(p.total_units, unit)} billed · {price_text(p)}"
        for axis, costs in p.breakdown().items():
            if axis == sp.needs or len(costs) < 2:
                continue
            yield from axis_rows(axis, costs, unit, rows, "    ")
    shown = plan.jobs[:rows]
    if shown:
        head = "jobs" if len(plan.jobs) <= rows else f"jobs (first {len(shown)} of {len(plan.jobs):,})"
        yield f"  {head}:"
        width = min(max(len(j.id) for j in shown), 48)
        for j in shown:
            of = plan.stage_of(j)
            unit = of.plan.app.pricing.unit if of is not None else "unit"
            yield (f"    {j.id[:48]:<{width}}  {j.short_key}  {plural(j.units, unit):>11}  "
                   f"{format_usd(j.cost):>8}  -> {j.output_name}")


def _fans_out(sp: StagePlan) -> bool:
    return sp.fanout is not None


def stage_of_job(plan: Plan, index: int) -> StagePlan | None:
    return plan.stage_of(plan.jobs[index]) if plan.stages else None


def stage_documents(plan: Plan, price_json: Any) -> list[dict[str, Any]]:
    """``plan --json``'s ``stages``: each stage's app, upstream, price, totals and axes."""
    out = []
    for sp in plan.stages:
        p = sp.plan
        images = p.app.pricing.unit == "image"
        stage = plan.pipeline.stage(sp.name) if plan.pipeline is not None else None
        low = p.lowest_cost
        out.append({
            "name": sp.name,
            "app": str(p.recipe.app),
            "needs": sp.needs,
            "where": {w.axis: sorted(w.labels) for w in stage.where} if stage is not None else {},
            "price": price_json(p),
            "totals": {
                "jobs": len(p.jobs),
                "units_billed": p.total_units,
                "images_billed": p.total_units if images else None,
                "cost_usd": usd_decimal(p.total_cost),
                "cost_low_usd": None if low is None else usd_decimal(low),
                "at_most": _fans_out(sp),
            },
            "breakdown": {
                axis: [{"value": c.value, "jobs": c.jobs, "units": c.units, "cost_usd": usd_decimal(c.cost)}
                       for c in costs]
                for axis, costs in p.breakdown().items() if axis != sp.needs
            },
        })
    return out
