"""``plan --check-prices``: the bundled price table against the service's estimate endpoint.

One estimate per distinct billed quantity in the plan (the price depends on ``n``
only); a difference is reported with both figures, so a stale price table never
silently skews a budget.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.money import format_usd
from ..core.planning import Plan
from .client import ApiClient

__all__ = ["PriceCheck", "check_prices"]


@dataclass(frozen=True, slots=True)
class PriceCheck:
    units: int
    ours: int  # microcents
    theirs: int | None
    confidence: str

    @property
    def agrees(self) -> bool:
        return self.theirs is not None and self.theirs == self.ours

    def line(self) -> str:
        seen = format_usd(self.theirs) if self.theirs is not None else "no figure"
        verdict = "agrees" if self.agrees else "DIFFERS"
        images = f"{self.units} image{'s' if self.units != 1 else ''}"
        return (f"price check, {images} a task: table {format_usd(self.ours)}, service {seen} "
                f"({self.confidence}) — {verdict}")


async def check_prices(plan: Plan, api: ApiClient) -> list[PriceCheck]:
    app = await api.get_app(plan.app.name)
    app_id = str(app.get("id") or plan.app.name)
    seen: dict[int, PriceCheck] = {}
    for job in plan.jobs:
        if job.units in seen:
            continue
        request = plan.render(job).request
        for name in plan.validator.file_fields:  # the price does not depend on the image: leave it out
            request.pop(name, None)
        answer = await api.estimate(app_id, request)
        micro = answer.get("microcents")
        seen[job.units] = PriceCheck(job.units, job.cost, micro if isinstance(micro, int) else None,
                                     str(answer.get("confidence", "unknown")))
    return sorted(seen.values(), key=lambda c: c.units)
