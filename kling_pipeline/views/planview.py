"""How a plan reads: a text summary for people and a stable JSON document for machines.

Pure functions of a ``Plan``. The JSON shape is documented in docs/recipes.md
("plan --json") and versioned by its ``format`` field.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, TextIO

from ..core.errors import Diagnostic
from ..core.money import format_usd, usd_decimal
from ..core.planning import Plan
from ..core.schemas import ServiceLimits, service_limits

__all__ = ["PLAN_FORMAT", "plan_summary", "write_plan_json"]

PLAN_FORMAT = "kling-pipeline.plan/1"
DEFAULT_ROWS = 20
MAX_SHOWN_WARNINGS = 50


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def budget_line(plan: Plan) -> str:
    if plan.budget_microcents is None:
        return "budget: none set (add 'budget: {max_usd: ...}' or pass --budget)"
    cap = format_usd(plan.budget_microcents)
    if plan.over_budget:
        return (f"budget {cap}: OVER BUDGET by {format_usd(plan.over_budget)} — raise budget.max_usd, "
                "or narrow the sweep (--only axis=value)")
    return f"budget {cap}: within budget ({format_usd(plan.budget_microcents - plan.total_cost)} to spare)"


RATE_NOTE_SECONDS = 30.0  # say how long the service's rate limit makes a sweep once it adds this much


def min_submit_seconds(jobs: int, limits: ServiceLimits) -> float:
    """The least time ``jobs`` submits take at the service's published runs limit."""
    return jobs * 60.0 / limits.runs_per_minute


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def rate_line(plan: Plan, limits: ServiceLimits) -> str | None:
    """How long the service's published rate limit makes the sweep, when that matters."""
    seconds = min_submit_seconds(len(plan.jobs), limits)
    if seconds < RATE_NOTE_SECONDS:
        return None
    return (f"rate limit: {_plural(len(plan.jobs), 'job')} take at least {_duration(seconds)} to submit at the "
            f"service's published {limits.runs_per_minute:g} runs/min (the run paces itself to it)")


def warning_lines(warnings: tuple[Diagnostic, ...], limit: int = MAX_SHOWN_WARNINGS) -> list[str]:
    """The warnings as printed: the first ``limit``, then a count of the rest."""
    out = []
    for w in warnings[:limit]:
        where = f"{w.position}: " if w.position else ""
        combo = f"{w.combination} " if w.combination else ""
        out.append(f"{where}warning: {combo}{w.message}")
    if len(warnings) > limit:
        rest = len(warnings) - limit
        out.append(f"... and {rest:,} more warning{'s' if rest != 1 else ''}")
    return out


def plan_summary(plan: Plan, rows: int = DEFAULT_ROWS) -> Iterator[str]:
    """Lines of the human-readable plan: totals, budget verdict, per-axis costs, first jobs."""
    r, price = plan.recipe, plan.app.pricing
    yield f"{r.file}: {r.name} — {r.app}"
    billed = _plural(plan.total_units, "image")
    yield (f"  {_plural(len(plan.jobs), 'job')} · {billed} billed · {_plural(plan.images_returned, 'image')} "
           f"returned · {format_usd(plan.total_cost)} at {format_usd(price.microcents_per_unit)}/{price.unit}"
           + (f" (price read {price.read_on})" if price.read_on and r.price_microcents is None else
              " (price set by the recipe)" if r.price_microcents is not None else ""))
    yield f"  {budget_line(plan)}"
    rate = rate_line(plan, service_limits())
    if rate:
        yield f"  {rate}"
    extra = []
    if plan.collapsed:
        extra.append(f"{_plural(plan.collapsed, 'identical job')} merged")
    if plan.removed_by_filter:
        extra.append(f"{_plural(plan.removed_by_filter, 'combination')} removed by the filter")
    if plan.filtered_out:
        extra.append(f"{_plural(plan.filtered_out, 'combination')} left out by --only")
    if extra:
        yield "  " + "; ".join(extra)
    yield f"  output: {plan.output_dir}"
    breakdown = plan.breakdown()
    for axis, costs in breakdown.items():
        if len(costs) > 1 or len(breakdown) == 1:
            yield f"  by {axis}:"
            width = min(max(len(c.value) for c in costs), 40)
            for c in costs[:rows]:
                yield (f"    {c.value[:40]:<{width}}  {_plural(c.jobs, 'job'):>10}  "
                       f"{_plural(c.units, 'image'):>12}  {format_usd(c.cost):>10}")
            if len(costs) > rows:
                yield f"    ... {len(costs) - rows:,} more values"
    shown = plan.jobs[:rows]
    if shown:
        head = "jobs" if len(plan.jobs) <= rows else f"jobs (first {len(shown)} of {len(plan.jobs):,})"
        yield f"  {head}:"
        width = min(max(len(j.id) for j in shown), 48)
        for j in shown:
            yield (f"    {j.id[:48]:<{width}}  {j.short_key}  {_plural(j.units, 'image'):>9}  "
                   f"{format_usd(j.cost):>8}  -> {j.output_name}")


def _job_json(plan: Plan, index: int) -> dict[str, Any]:
    j = plan.jobs[index]
    return {
        "id": j.id,
        "key": j.key,
        "combination": dict(j.combination.labels),
        "repeat_index": j.repeat_index,
        "images": j.units,
        "cost_usd": usd_decimal(j.cost),
        "output": j.output_name,
    }


def plan_document(plan: Plan) -> dict[str, Any]:
    """The JSON plan without its ``jobs`` list (see ``write_plan_json``)."""
    r, price = plan.recipe, plan.app.pricing
    return {
        "format": PLAN_FORMAT,
        "recipe": r.file,
        "name": r.name,
        "app": str(r.app),
        "price": {
            "usd_per_image": usd_decimal(price.microcents_per_unit),
            "unit": price.unit,
            "source": "recipe" if r.price_microcents is not None else price.source,
            "read_on": price.read_on,
        },
        "totals": {
            "jobs": len(plan.jobs),
            "images_billed": plan.total_units,
            "images_returned": plan.images_returned,
            "cost_usd": usd_decimal(plan.total_cost),
            "collapsed": plan.collapsed,
            "filtered_out": plan.filtered_out,
            "removed_by_filter": plan.removed_by_filter,
        },
        "budget": {
            "max_usd": None if plan.budget_microcents is None else usd_decimal(plan.budget_microcents),
            "within": plan.over_budget == 0,
            "over_usd": usd_decimal(plan.over_budget),
        },
        "rate_limit": _rate_json(plan, service_limits()),
        "output_dir": str(plan.output_dir),
        "breakdown": {
            axis: [{"value": c.value, "jobs": c.jobs, "images": c.units, "cost_usd": usd_decimal(c.cost)}
                   for c in costs]
            for axis, costs in plan.breakdown().items()
        },
        "warnings": [
            {"file": w.position.file if w.position else None, "line": w.position.line if w.position else None,
             "col": w.position.col if w.position else None, "combination": w.combination,
             "message": w.message}
            for w in plan.warnings
        ],
    }


def _rate_json(plan: Plan, limits: ServiceLimits) -> dict[str, Any]:
    return {"runs_per_minute": limits.runs_per_minute,
            "min_submit_seconds": round(min_submit_seconds(len(plan.jobs), limits), 1),
            "source": limits.source, "read_on": limits.read_on}


def write_plan_json(plan: Plan, out: TextIO) -> None:
    """Write the whole plan as one JSON document, streaming the jobs list."""
    doc = plan_document(plan)
    head = json.dumps(doc, ensure_ascii=False, indent=2)
    out.write(head[:-2] + ',\n  "jobs": [')
    for i in range(len(plan.jobs)):
        out.write(("\n    " if i == 0 else ",\n    ") + json.dumps(_job_json(plan, i), ensure_ascii=False))
    out.write("\n  ]\n}\n" if plan.jobs else "]\n}\n")
