"""``plan --check-prices``: the price table against the service's estimate endpoint.

One estimate per distinct (billed quantity, price) in the plan — the quantity field and the
fields of the rates decide the price; a difference is reported with both figures, so a
stale price table never silently skews a budget. A range is compared bound for bound.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.localfiles import classify
from ..core.money import format_usd
from ..core.planning import Plan
from .client import ApiClient

__all__ = ["PriceCheck", "check_prices"]

PLACEHOLDER = "https://example.com/kling-pipeline-price-check"
"""Sent for a local file: the price may depend on whether a file is given, never on its bytes."""


def _shown(bounds: tuple[int, int] | None) -> str:
    if bounds is None:
        return "no figure"
    low, high = bounds
    return format_usd(low) if low == high else f"{format_usd(low)} to {format_usd(high)}"


@dataclass(frozen=True, slots=True)
class PriceCheck:
    units: int
    unit: str
    ours: tuple[int, int] | None  # microcents: (lowest, highest); the same for an exact price
    theirs: tuple[int, int] | None
    confidence: str

    @property
    def agrees(self) -> bool:
        return self.theirs is not None and self.theirs == self.ours

    def line(self) -> str:
        verdict = "agrees" if self.agrees else "DIFFERS"
        amount = f"{self.units} {self.unit}{'s' if self.units != 1 else ''}"
        return (f"price check, {amount} a task: table {_shown(self.ours)}, service {_shown(self.theirs)} "
                f"({self.confidence}) — {verdict}")


def _bounds(answer: dict[str, object]) -> tuple[int, int] | None:
    exact, low, high = answer.get("microcents"), answer.get("min"), answer.get("max")
    if isinstance(exact, int):
        return exact, exact
    if isinstance(low, int) and isinstance(high, int):
        return low, high
    return None


async def check_prices(plan: Plan, api: ApiClient) -> list[PriceCheck]:
    app = await api.get_app(plan.app.name)
    app_id = str(app.get("id") or plan.app.name)
    pricing = plan.app.pricing
    seen: dict[tuple[int, int], PriceCheck] = {}
    for job in plan.jobs:
        if (job.units, job.cost) in seen:
            continue
        request = plan.render(job).request
        for name in plan.validator.file_fields:
            value = request.get(name)
            if isinstance(value, str) and classify(value) != "url":
                request[name] = PLACEHOLDER
        answer = await api.estimate(app_id, request)
        seen[(job.units, job.cost)] = PriceCheck(job.units, pricing.unit, pricing.cost_range(request), _bounds(answer),
                                                 str(answer.get("confidence", "unknown")))
    return sorted(seen.values(), key=lambda c: (c.units, c.ours or (0, 0)))
