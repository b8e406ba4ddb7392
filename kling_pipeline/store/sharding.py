"""Splitting a sweep across machines (``--shard I/N``) and combining what they wrote.

A job belongs to shard ``I`` of ``N`` when its content key, read as a number,
is ``I - 1`` modulo ``N``: deterministic, independent of order, stable when the
recipe grows. Each shard gets a share of the recipe's budget in proportion to its planned cost
unless given its own (``--budget``), and writes its own manifest
(``manifest.shard-I-of-N.jsonl``) so shard outputs can be copied into one
directory without clashing; ``merge`` then folds them into ``manifest.jsonl``
for ``status`` and ``report``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ..core.chain import joined, root_keys
from ..core.errors import UsageError
from ..core.planning import Plan
from .atomic import write_atomic
from .journal import MANIFEST_NAME, read_records
from .lock import OutputLock
from .records import encode

__all__ = ["Shard", "lock_name", "manifest_name", "merge_manifests", "parse_shard", "shard_plan"]

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
SHARD_FILES = re.compile(r"^manifest\.shard-(\d+)-of-(\d+)\.jsonl$")


@dataclass(frozen=True, slots=True)
class Shard:
    index: int  # 1-based
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, key: str) -> bool:
        return int(key[:16], 16) % self.count == self.index - 1


def parse_shard(text: str | None) -> Shard | None:
    if text is None:
        return None
    m = _SHARD.match(text)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise UsageError(f"--shard takes I/N with 1 <= I <= N (e.g. 2/4), got {text!r}")
    return Shard(int(m.group(1)), int(m.group(2)))


def manifest_name(shard: Shard | None) -> str:
    return MANIFEST_NAME if shard is None else f"manifest.shard-{shard.index}-of-{shard.count}.jsonl"


def lock_name(shard: Shard | None) -> str:
    return ".kling-pipeline.lock" if shard is None else f".kling-pipeline.shard-{shard.index}-of-{shard.count}.lock"


CENT = 1_000_000  # microcents


def cap_shares(cap: int, costs: list[int]) -> list[int]:
    """``cap`` split in proportion to ``costs`` (evenly when they are all 0), in whole cents
    as far as the cap allows; the shares sum to the cap exactly (largest remainders first,
    a sub-cent rest of the cap to the first share)."""
    n = len(costs)
    weights = costs if sum(costs) > 0 else [1] * n
    total = sum(weights)
    cents = cap // CENT
    exact = [cents * w / total for w in weights]
    shares = [int(x) for x in exact]
    order = sorted(range(n), key=lambda i: (-(exact[i] - shares[i]), i))
    for i in order[:cents - sum(shares)]:
        shares[i] += 1
    out = [s * CENT for s in shares]
    out[0] += cap - cents * CENT
    return out


def shard_plan(plan: Plan, shard: Shard | None, own_budget: int | None) -> Plan:
    """The plan restricted to ``shard``'s jobs, with its share of the budget: the recipe's cap
    split in proportion to each shard's planned cost (so a sweep that fits, fits shard by shard).
    A pipeline is split by chain: a downstream job goes with the root job its chain starts from."""
    if shard is None:
        return plan
    roots = root_keys(plan) if plan.stages else None

    def owner(key: str) -> str:
        return roots[key] if roots is not None else key

    jobs = tuple(j for j in plan.jobs if shard.owns(owner(j.key)))
    recipe_cap = plan.recipe.budget_microcents
    if own_budget is not None:
        cap: int | None = own_budget if recipe_cap is None else min(own_budget, recipe_cap)
    elif recipe_cap is None:
        cap = None
    else:
        costs = [0] * shard.count
        for j in plan.jobs:
            costs[int(owner(j.key)[:16], 16) % shard.count] += j.cost
        cap = cap_shares(recipe_cap, costs)[shard.index - 1]
    if plan.stages and plan.pipeline is not None:
        stages = [replace(sp, plan=_restricted(sp.plan, lambda k: shard.owns(owner(k))), _index=None)
                  for sp in plan.stages]
        whole = joined(plan.pipeline, stages)
        return replace(whole, budget_microcents=cap, filtered_out=plan.filtered_out + len(plan.jobs) - len(jobs))
    return replace(_restricted(plan, shard.owns), budget_microcents=cap)


def _restricted(plan: Plan, keep: Callable[[str], bool]) -> Plan:
    jobs = tuple(j for j in plan.jobs if keep(j.key))
    return replace(
        plan, jobs=jobs, total_cost=sum(j.cost for j in jobs), total_units=sum(j.units for j in jobs),
        images_returned=len(jobs) * plan.app.pricing.images_returned_per_task,
        filtered_out=plan.filtered_out + len(plan.jobs) - len(jobs),
    )


def merge_manifests(out_dir: Path, extra: list[Path] | None = None) -> tuple[Path, int, int]:
    """Fold every shard manifest in ``out_dir`` (and ``extra`` files) into ``manifest.jsonl``.

    Records already there are kept and not repeated, so merging again is harmless.
    Returns (the merged manifest, shard files read, records added).
    """
    target = out_dir / MANIFEST_NAME
    sources = sorted(p for p in out_dir.iterdir() if SHARD_FILES.match(p.name)) if out_dir.is_dir() else []
    sources += [p for p in extra or [] if p.resolve() not in {s.resolve() for s in sources}]
    if not sources:
        raise UsageError(f"{out_dir}: no shard manifests (manifest.shard-I-of-N.jsonl) to merge")
    with OutputLock(out_dir):
        existing = read_records(target, repair=True)
        seen = {encode(r) for r in existing}
        lines = [encode(r) for r in existing]
        added = 0
        for source in sources:
            for record in read_records(source):
                line = encode(record)
                if line not in seen:
                    seen.add(line)
                    lines.append(line)
                    added += 1
        write_atomic(target, b"".join(lines), durable=True)
    return target, len(sources), added
