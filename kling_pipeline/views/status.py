"""Where a sweep stands: counts per state, spend against the cap, and what a resume would do.

Pure: a replayed manifest (and the plan, when the recipe is known) in, a frozen
``Status`` out; ``status_lines`` and ``status_document`` say it for people and machines.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.money import format_usd, usd_decimal
from ..core.planning import Plan
from ..run.options import RunOptions
from ..run.pipeline import StageTally, stage_tally
from ..run.session import decide_run
from ..run.work import Action, outputs_present
from ..store.state import ManifestState

__all__ = ["STATUS_FORMAT", "Status", "compute_status", "status_document", "status_lines"]

STATUS_FORMAT = "kling-pipeline.status/1"


@dataclass(frozen=True, slots=True)
class Status:
    out_dir: Path
    recipe: str | None
    app: str | None
    runs: int
    planned: int | None  # jobs in the plan (None without a recipe)
    counts: dict[str, int]  # completed, failed, cancelled, rejected, unknown, in_flight, not_started
    images: int  # images recorded and present on disk
    settled: int
    reserved: int
    cap: int | None
    planned_cost: int | None
    resume: dict[str, int] | None  # submit, submit_cost, reattach, reconcile, redownload, failed_left, unknown_left
    stages: tuple[StageTally, ...] = ()  # a pipeline's stages, where each stands

    @property
    def resume_fits(self) -> bool | None:
        if self.resume is None:
            return None
        return self.cap is None or self.settled + self.reserved + self.resume["submit_cost"] <= self.cap


def compute_status(out_dir: Path, state: ManifestState, plan: Plan | None = None) -> Status:
    counts = dict.fromkeys(("completed", "failed", "cancelled", "rejected", "unknown", "in_flight",
                            "not_started"), 0)
    keys = {j.key for j in plan.jobs} if plan is not None else set(state.jobs)
    d, downstream = decide_run(plan, state, RunOptions()) if plan is not None else (None, None)
    tallies: tuple[StageTally, ...] = ()
    if downstream is not None and plan is not None and d is not None:
        # a pipeline: its root jobs, and the downstream jobs made real so far (the others wait)
        keys = {j.key for _, jobs in downstream.chain.roots() for j in jobs} | set(downstream.chain.made)
        counts["not_started"] += d.waiting
        tallies = tuple(stage_tally(downstream.chain, state))
    images = 0
    for key in keys:
        job = state.jobs.get(key)
        if job is None or job.state in ("new", "not_created"):
            counts["not_started"] += 1
        elif job.state in ("intent", "unknown"):
            counts["unknown" if job.state == "unknown" else "in_flight"] += 1
        elif job.state == "submitted":
            counts["in_flight"] += 1
        else:
            counts[job.state] = counts.get(job.state, 0) + 1
            if job.state == "completed" and outputs_present(job, out_dir):
                images += len(job.done.outputs) if job.done is not None else 0
    resume = None
    if d is not None:
        resume = {
            "submit": d.count(Action.SUBMIT) + d.waiting,
            "submit_cost": sum(w.cost for w in d.work if w.action is Action.SUBMIT) + d.waiting_cost,
            "reattach": d.count(Action.REATTACH),
            "reconcile": d.count(Action.RECONCILE),
            "redownload": d.count(Action.REDOWNLOAD),
            "failed_left": len(d.failed),
            "unknown_left": len(d.unknown),
        }
    last = state.runs[-1] if state.runs else None
    cap = plan.budget_microcents if plan is not None else (last.cap_microcents if last else None)
    return Status(
        out_dir=out_dir, recipe=plan.recipe.file if plan is not None else (last.recipe if last else None),
        app=str(plan.recipe.app) if plan is not None else (last.app if last else None), runs=len(state.runs),
        planned=len(plan.jobs) if plan is not None else None, counts=counts, images=images,
        settled=state.settled, reserved=state.reserved, cap=cap if isinstance(cap, int) else None,
        planned_cost=plan.total_cost if plan is not None else None, resume=resume, stages=tallies,
    )


def status_lines(s: Status) -> Iterator[str]:
    runs = f"{s.runs} run{'s' if s.runs != 1 else ''}"
    yield f"{s.out_dir}: {s.recipe or '(recipe unknown)'} — {s.app or '?'} ({runs} recorded)"
    c = s.counts
    planned = f"{s.planned} planned · " if s.planned is not None else ""
    yield (f"  jobs: {planned}{c['completed']} done · {c['failed'] + c['cancelled'] + c['rejected']} failed · "
           f"{c['unknown']} unknown · {c['in_flight']} in flight · {c['not_started']} not started")
    yield f"  images: {s.images} on disk"
    for t in s.stages:
        waiting = f" · {t.waiting} waiting for their input" if t.waiting else ""
        yield (f"  stage {t.name}: {t.done}/{t.planned} done · {t.failed} failed{waiting} · "
               f"{format_usd(t.left_cost)} left to finish")
    cap = f" of the {format_usd(s.cap)} cap" if s.cap is not None else " (no cap)"
    planned_cost = f"; planned {format_usd(s.planned_cost)}" if s.planned_cost is not None else ""
    yield f"  spend: {format_usd(s.settled)} settled + {format_usd(s.reserved)} reserved{cap}{planned_cost}"
    if s.resume is None:
        yield "  resume: give the recipe to see what a resume would do"
        return
    r = s.resume
    verdict = "fits the budget" if s.resume_fits else "does NOT fit the budget (it would stop at the cap)"
    yield (f"  resume: would submit {r['submit']} jobs ({format_usd(r['submit_cost'])}, {verdict}), "
           f"re-attach {r['reattach']}, reconcile {r['reconcile']}, re-download {r['redownload']}")
    if r["failed_left"] or r["unknown_left"]:
        yield (f"          and leave {r['failed_left']} failed (--retry-failed) and {r['unknown_left']} unknown "
               "(--retry-unknown)")


def status_document(s: Status) -> dict[str, Any]:
    def usd(v: int | None) -> str | None:
        return None if v is None else usd_decimal(v)

    resume: dict[str, Any] | None = None
    if s.resume is not None:
        resume = {k: v for k, v in s.resume.items() if k != "submit_cost"}
        resume["submit_cost_usd"] = usd(s.resume["submit_cost"])
        resume["fits_budget"] = s.resume_fits
    return {
        "format": STATUS_FORMAT,
        "out_dir": str(s.out_dir),
        "recipe": s.recipe,
        "app": s.app,
        "runs": s.runs,
        "jobs": {"planned": s.planned, **s.counts},
        "images": s.images,
        "spend": {"settled_usd": usd(s.settled), "reserved_usd": usd(s.reserved), "cap_usd": usd(s.cap),
                  "planned_usd": usd(s.planned_cost)},
        "resume": resume,
        **({"stages": [{"name": t.name, "planned": t.planned, "done": t.done, "failed": t.failed,
                        "waiting": t.waiting, "left_usd": usd(t.left_cost), "planned_usd": usd(t.planned_cost)}
                       for t in s.stages]} if s.stages else {}),
    }
