"""Rows of the plan's text shared by a one-stage plan and each stage of a pipeline."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ..core.money import format_usd
from ..core.planning import AxisCost

__all__ = ["axis_rows", "plural"]


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def axis_rows(axis: str, costs: Sequence[AxisCost], unit: str, rows: int, indent: str,
              counted: int = 12) -> Iterator[str]:
    """``by AXIS:`` and a row per value (jobs, units, cost), at most ``rows`` of them."""
    yield f"{indent}by {axis}:"
    width = min(max(len(c.value) for c in costs), 40)
    for c in costs[:rows]:
        yield (f"{indent}  {c.value[:40]:<{width}}  {plural(c.jobs, 'job'):>10}  "
               f"{plural(c.units, unit):>{counted}}  {format_usd(c.cost):>10}")
    if len(costs) > rows:
        yield f"{indent}  ... {len(costs) - rows:,} more values"
