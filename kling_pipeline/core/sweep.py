"""The size of a sweep, known before it is expanded.

A matrix of 8 axes of 10 values is 10^8 jobs: expanding it to find that out takes
minutes and gigabytes. ``size_problems`` counts the jobs from the lengths of the axes
(an upper bound: ``exclude`` is not subtracted, every ``include`` entry is counted as a
job of its own), times ``repeat``, and refuses a sweep past the limit at the recipe's
position, with the count and how to raise the limit. It also refuses ``exclude`` and
``include`` lists that would take too long to apply: each combination looks its entries
up once per set of axes they name (see ``matrix``), so many entries naming many
different sets of axes would cost as much as comparing every entry with every
combination.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import Diagnostic, Position
from .matrix import MatrixSpec, check_work

if TYPE_CHECKING:  # the recipe model reads DEFAULT_MAX_JOBS from here (it bounds a file axis's glob)
    from .recipe import Recipe

__all__ = ["DEFAULT_MAX_JOBS", "MAX_MATRIX_LOOKUPS", "count", "job_bound", "size_problems"]

DEFAULT_MAX_JOBS = 500_000  # a plan of this many takes ~4 s and ~370 MB: every plan stays within 20 s and 1 GB
MAX_MATRIX_LOOKUPS = 20_000_000  # exclude/include lookups over all combinations


def count(n: int) -> str:
    """A count as it reads in a message: ``100,000,000``, or ``about 10^30`` when huge."""
    if n < 10**15:
        return f"{n:,}"
    return f"about 10^{int((n.bit_length() - 1) * 0.30103)}"  # without printing a number of 30,000 digits


def _factors(spec: MatrixSpec) -> list[int]:
    zipped = {name for group in spec.zip for name in group[1:]}
    return [len(axis.values) for axis in spec.axes if axis.name not in zipped]


def _combinations(spec: MatrixSpec) -> tuple[int, str]:
    """Combinations at most, and how they come about (``10 x 10 combinations + 2 from include``)."""
    factors = _factors(spec)
    parts = []
    if factors:
        shown = [str(f) for f in factors] if len(factors) <= 8 else [*map(str, factors[:4]), f"({len(factors)} axes)"]
        parts.append(" x ".join(shown) + " combinations")
    if spec.include:
        parts.append(f"{len(spec.include):,} from include")
    combos = spec.size_hint() + len(spec.include) if parts else 1
    return combos, " + ".join(parts) or "1 combination"


def job_bound(recipe: Recipe) -> tuple[int, str]:
    """The recipe's jobs at most, as ``size_problems`` counts them (``exclude``, ``filter`` and
    ``--only`` not subtracted), and how they come about (``3 x 2 combinations x repeat 4``)."""
    combos, detail = _combinations(recipe.matrix)
    repeat = f" x repeat {count(recipe.repeat)}" if recipe.repeat > 1 else ""
    return combos * recipe.repeat, detail + repeat


def size_problems(recipe: Recipe, max_jobs: int = DEFAULT_MAX_JOBS) -> list[Diagnostic]:
    """Why the sweep is too large to plan (empty when it is not)."""
    spec = recipe.matrix
    combos, detail = _combinations(spec)
    jobs = combos * recipe.repeat
    start = Position(recipe.file, 1, 1)
    if jobs > max_jobs:
        by_repeat = combos <= max_jobs and recipe.repeat > 1
        where = (recipe.repeat_pos if by_repeat else recipe.matrix_pos) or recipe.repeat_pos or start
        repeat = f" x repeat {count(recipe.repeat)}" if recipe.repeat > 1 else ""
        return [Diagnostic(where, f"the sweep makes {count(jobs)} jobs ({detail}{repeat}), more than the limit of "
                                  f"{max_jobs:,}; narrow it, or raise the limit with --max-jobs N")]
    product = spec.size_hint()
    excluding, including = check_work(spec)
    lookups = product * (excluding + including)
    if lookups > MAX_MATRIX_LOOKUPS:
        entry = (spec.exclude or spec.include)[0]
        return [Diagnostic(entry.pos, f"exclude and include name {excluding + including:,} different sets of axes: "
                                      f"applying them to {count(product)} combinations takes {count(lookups)} "
                                      f"lookups (at most {MAX_MATRIX_LOOKUPS:,}); write entries that name the "
                                      "same axes")]
    return []
