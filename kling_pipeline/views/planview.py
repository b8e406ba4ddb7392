"""How a plan reads: a text summary for people and a stable JSON document for machines.

Pure functions of a ``Plan``. The JSON shape is documented in docs/recipes.md
("plan --json") and versioned by its ``format`` field.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, TextIO

from ..core.errors import Diagnostic, RecipeError
from ..core.loading import display_path
from ..core.localfiles import LocalFile
from ..core.money import format_usd, usd_decimal
from ..core.planning import Plan
from ..core.schemas import ServiceLimits, service_limits
from .pipelineview import pipeline_summary, stage_documents, stage_of_job
from .textrows import axis_rows, plural

__all__ = ["PLAN_FORMAT", "VALIDATE_FORMAT", "diagnostic_json", "plan_summary", "validate_entry", "write_plan_json"]

PLAN_FORMAT = "kling-pipeline.plan/1"
DEFAULT_ROWS = 20
MAX_SHOWN_WARNINGS = 50


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
    return (f"rate limit: {plural(len(plan.jobs), 'job')} take at least {_duration(seconds)} to submit at the "
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


def unit_prices(plan: Plan) -> tuple[int, int] | None:
    """The lowest and highest price of one billed unit over the plan's jobs (rates make them
    differ); None when the price is unknown."""
    pricing = plan.app.pricing
    if pricing.confidence == "unknown":
        return None
    if pricing.confidence == "range" and pricing.min_microcents_per_unit is not None:
        return pricing.min_microcents_per_unit, pricing.max_microcents_per_unit or pricing.min_microcents_per_unit
    if not pricing.rates:
        return pricing.microcents_per_unit, pricing.microcents_per_unit
    per = {j.cost // j.units for j in plan.jobs if j.units} or {pricing.microcents_per_unit}
    return min(per), max(per)


def price_text(plan: Plan) -> str:
    """``$0.112 at $0.028/image``, ``$1.68 at $0.084 to $0.112/second (by mode, reference_video)``,
    a range and its bounds, or why the price is unknown."""
    pricing, r = plan.app.pricing, plan.recipe
    read = (f" (price read {pricing.read_on})" if pricing.read_on and r.price_microcents is None else
            " (price set by the recipe)" if r.price_microcents is not None else "")
    per = unit_prices(plan)
    if per is None:
        if plan.max_job_microcents is not None:
            return (f"price unknown: each job reserves --max-job-usd {format_usd(plan.max_job_microcents)} "
                    f"({format_usd(plan.total_cost)} in all)")
        return ("price unknown: `run` refuses it; set price.usd_per_unit in the recipe or pass --max-job-usd"
                + (f" ({pricing.note})" if pricing.note else ""))
    low, high = per
    rate = f"{format_usd(low)}" if low == high else f"{format_usd(low)} to {format_usd(high)}"
    rate += f"/{pricing.unit}"
    if pricing.confidence == "range":
        return (f"{format_usd(plan.lowest_cost or 0)} to {format_usd(plan.total_cost)} at {rate}: a range, the "
                f"budget reserves the upper bound{read}")
    fields = sorted({k for rt in pricing.rates for k, _ in rt.when})
    by = f" (by {', '.join(fields)})" if low != high and fields else ""
    return f"{format_usd(plan.total_cost)} at {rate}{by}{read}"


def plan_summary(plan: Plan, rows: int = DEFAULT_ROWS) -> Iterator[str]:
    """Lines of the human-readable plan: totals, budget verdict, per-axis costs, first jobs."""
    if plan.stages:
        yield from pipeline_summary(plan, rows, price_text, budget_line, rate_line)
        return
    r, unit = plan.recipe, plan.app.pricing.unit
    yield f"{r.file}: {r.name} — {r.app}"
    counts = [plural(len(plan.jobs), "job"), f"{plural(plan.total_units, unit)} billed"]
    if unit == "image":
        counts.append(f"{plural(plan.images_returned, 'image')} returned")
    yield f"  {' · '.join(counts)} · {price_text(plan)}"
    yield f"  {budget_line(plan)}"
    rate = rate_line(plan, service_limits())
    if rate:
        yield f"  {rate}"
    extra = []
    if plan.collapsed:
        extra.append(f"{plural(plan.collapsed, 'identical job')} merged")
    if plan.removed_by_filter:
        extra.append(f"{plural(plan.removed_by_filter, 'combination')} removed by the filter")
    if plan.filtered_out:
        extra.append(f"{plural(plan.filtered_out, 'combination')} left out by --only")
    if extra:
        yield "  " + "; ".join(extra)
    yield f"  output: {plan.output_dir}"
    breakdown = plan.breakdown()
    for axis, costs in breakdown.items():
        if len(costs) > 1 or len(breakdown) == 1:
            counted = max(12, *(len(plural(c.units, unit)) for c in costs[:rows]))
            yield from axis_rows(axis, costs, unit, rows, "  ", counted)
    shown = plan.jobs[:rows]
    if shown:
        head = "jobs" if len(plan.jobs) <= rows else f"jobs (first {len(shown)} of {len(plan.jobs):,})"
        yield f"  {head}:"
        width = min(max(len(j.id) for j in shown), 48)
        counted = max(9, *(len(plural(j.units, unit)) for j in shown))
        for j in shown:
            yield (f"    {j.id[:48]:<{width}}  {j.short_key}  {plural(j.units, unit):>{counted}}  "
                   f"{format_usd(j.cost):>8}  -> {j.output_name}")


class _Requests:
    """Each job's request as it will be sent, rendered again while the JSON is written (the
    plan keeps none): a local file or ``data:`` URI is shown by its path, sha256, size and
    type — its upload's URI is known only when the run uploads it."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self._shown: dict[LocalFile, dict[str, Any]] = {}

    def _file(self, f: LocalFile) -> dict[str, Any]:
        shown = self._shown.get(f)
        if shown is None:
            path = None if f.path is None else display_path(f.path)
            shown = self._shown[f] = {"path": path, "sha256": f.sha256, "size": f.size, "type": f.media_type}
        return shown

    def __call__(self, index: int) -> dict[str, Any]:
        sp = stage_of_job(self.plan, index)  # a pipeline's job renders in its stage's plan
        rendered = (sp.plan if sp is not None else self.plan).render(self.plan.jobs[index])
        request = dict(rendered.request)
        for name, f in rendered.files.items():
            request[name] = self._file(f)
        return request


def diagnostic_json(d: Diagnostic) -> dict[str, Any]:
    p = d.position
    return {"file": p.file if p else None, "line": p.line if p else None, "col": p.col if p else None,
            "combination": d.combination, "message": d.message}


def _job_json(plan: Plan, index: int, requests: _Requests | None = None) -> dict[str, Any]:
    j = plan.jobs[index]
    sp = stage_of_job(plan, index)
    unit = (sp.plan if sp is not None else plan).app.pricing.unit
    out = {
        **({"stage": sp.name} if sp is not None else {}),
        "id": j.id,
        "key": j.key,
        "combination": dict(j.combination.labels),
        "repeat_index": j.repeat_index,
        "images": j.units if unit == "image" else None,
        "units": j.units,
        "cost_usd": usd_decimal(j.cost),
        "output": j.output_name,
    }
    if requests is not None:
        out["request"] = requests(index)
    return out


def _price_json(plan: Plan) -> dict[str, Any]:
    r, price = plan.recipe, plan.app.pricing
    per_unit = None if price.confidence == "unknown" else usd_decimal(price.microcents_per_unit)
    doc: dict[str, Any] = {
        "usd_per_image": per_unit if price.unit == "image" else None,
        "usd_per_unit": per_unit,
        "unit": price.unit,
        "quantity_field": price.quantity_field or None,
        "confidence": price.confidence,
        "rates": [{"when": {k: list(v) if len(v) > 1 else v[0] for k, v in rate.when},
                   "usd_per_unit": usd_decimal(rate.microcents_per_unit)} for rate in price.rates],
        "source": "recipe" if r.price_microcents is not None else price.source,
        "read_on": price.read_on,
    }
    if price.confidence == "range":
        doc["min_usd_per_unit"] = usd_decimal(price.min_microcents_per_unit or 0)
        doc["max_usd_per_unit"] = usd_decimal(price.max_microcents_per_unit or 0)
    if plan.max_job_microcents is not None:
        doc["max_job_usd"] = usd_decimal(plan.max_job_microcents)
    return doc


def plan_document(plan: Plan) -> dict[str, Any]:
    """The JSON plan without its ``jobs`` list (see ``write_plan_json``)."""
    r, images = plan.recipe, plan.app.pricing.unit == "image"
    low = plan.lowest_cost
    return {
        "format": PLAN_FORMAT,
        "recipe": r.file,
        "name": r.name,
        "app": str(r.app),
        "price": _price_json(plan),
        "totals": {
            "jobs": len(plan.jobs),
            "images_billed": plan.total_units if images else None,
            "images_returned": plan.images_returned if images else None,
            "units_billed": plan.total_units,
            "cost_usd": usd_decimal(plan.total_cost),
            "cost_low_usd": None if low is None else usd_decimal(low),
            "unbounded_jobs": plan.unbounded,
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
            axis: [{"value": c.value, "jobs": c.jobs, "images": c.units if images else None, "units": c.units,
                    "cost_usd": usd_decimal(c.cost)} for c in costs]
            for axis, costs in plan.breakdown().items()
        },
        **({"stages": stage_documents(plan, _price_json)} if plan.stages else {}),
        "warnings": [diagnostic_json(w) for w in plan.warnings],
    }


def _rate_json(plan: Plan, limits: ServiceLimits) -> dict[str, Any]:
    return {"runs_per_minute": limits.runs_per_minute,
            "min_submit_seconds": round(min_submit_seconds(len(plan.jobs), limits), 1),
            "source": limits.source, "read_on": limits.read_on}


def write_plan_json(plan: Plan, out: TextIO, *, requests: bool = True,
                    cached: frozenset[str] | None = None) -> None:
    """Write the whole plan as one JSON document, streaming the jobs list; each job with its
    rendered ``request`` unless ``requests`` is False. ``cached``: the keys of the jobs the shared
    result cache will serve (``None`` when the cache is off), summed up in ``cache`` and marked on
    each job."""
    doc = plan_document(plan)
    if cached is not None:
        served = [j for j in plan.jobs if j.key in cached]
        doc["cache"] = {"jobs": len(served), "saved_usd": usd_decimal(sum(j.cost for j in served))}
    head = json.dumps(doc, ensure_ascii=False, indent=2)
    render = _Requests(plan) if requests else None
    out.write(head[:-2] + ',\n  "jobs": [')
    for i in range(len(plan.jobs)):
        job = _job_json(plan, i, render)
        if cached is not None:
            job["cached"] = plan.jobs[i].key in cached
        out.write(("\n    " if i == 0 else ",\n    ") + json.dumps(job, ensure_ascii=False))
    out.write("\n  ]\n}\n" if plan.jobs else "]\n}\n")


VALIDATE_FORMAT = "kling-pipeline.validate/1"


def validate_entry(file: str, plan: Plan | None = None, error: RecipeError | None = None) -> dict[str, Any]:
    """One recipe of ``validate --json``: valid with its jobs and cost, or its errors."""
    if plan is not None:
        return {"file": file, "valid": True, "jobs": len(plan.jobs), "cost_usd": usd_decimal(plan.total_cost),
                "errors": [], "error_total": 0, "warnings": [diagnostic_json(w) for w in plan.warnings]}
    assert error is not None
    return {"file": file, "valid": False, "jobs": None, "cost_usd": None,
            "errors": [diagnostic_json(d) for d in error.diagnostics], "error_total": error.total, "warnings": []}
