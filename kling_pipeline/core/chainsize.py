"""How many jobs a downstream stage makes, known before its jobs are made.

A stage that needs another has, for each upstream job ``where`` keeps (for each *file* of
it, when it reads a list output), its own matrix's combinations, each ``repeat`` times.
``size_problem`` counts that before the stage's implicit axis is built or its matrix
expanded — taken values x ``job_bound`` of its own recipe (``exclude``, ``filter`` and
``--only`` not subtracted, as for a one-stage recipe) — and refuses it when, with the jobs
of the stages planned before it, the pipeline would pass the ``--max-jobs`` limit.

How many files a list output holds is known only once the task has run. ``fan_out`` says
how many to count for each upstream job, and only when that is knowable:

* the upstream app bills per item of the list's kind (image-o1 and Gemini bill per
  ``image``, and ``images`` holds images): a task returns at most what it is billed for,
  so each job counts its billed units (capped by the list's ``maxItems``, when given);
* else the output schema's ``maxItems`` bounds the list: each job counts that many;
* else nothing bounds it (a video billed per second, a list of images billed per run):
  ``fan_out`` gives None and the planner refuses the read, at its place.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import Diagnostic
from .jobs import Job
from .outputs import OutputField
from .schemas import AppSpec
from .stages import Stage
from .sweep import count, job_bound

__all__ = ["FanOut", "fan_out", "size_problem", "unknown_fan_out"]


@dataclass(frozen=True, slots=True)
class FanOut:
    """A list output read one file per downstream job, and how many files each upstream job counts."""

    field: str
    billed: bool  # each upstream job counts its billed units (the app bills per item of the list)
    most: int | None  # the list's maxItems, when its schema says

    def files(self, job: Job) -> int:
        """The most files ``job`` returns in the list (what the plan counts)."""
        if not self.billed:
            assert self.most is not None
            return self.most
        units = max(1, job.units)
        return units if self.most is None else min(units, self.most)

    @property
    def counted(self) -> str:
        """How each upstream job is counted, for the plan: ``as billed`` or ``at most 4 a task``."""
        return "as billed" if self.billed else f"at most {self.most:,} a task"


def fan_out(app: AppSpec, out: OutputField) -> FanOut | None:
    """How the plan counts the files of ``out``, a list output of ``app``; None when nothing says."""
    pricing = app.pricing
    if pricing.unit == out.kind and pricing.quantity_of == "value":
        return FanOut(out.name, True, out.max_items)
    if out.max_items is not None:
        return FanOut(out.name, False, out.max_items)
    return None


def unknown_fan_out(where: str, needs: str, out: OutputField, app: AppSpec) -> str:
    """Why a list output whose length cannot be known fans out to no count."""
    kind = out.kind or "file"
    return (f"{where}: {needs}.{out.name} fans out one job per file, but how many files a task of {app.name} "
            f"returns is not known before it runs: it bills per {app.pricing.unit}, not per {kind}, and its "
            f"output schema gives {out.name} no maxItems; read a single file output of {needs}, or state the "
            f"most in the app's output schema (maxItems)")


def size_problem(stage: Stage, taken: int | None, source: str, before: int, max_jobs: int) -> Diagnostic | None:
    """Why ``stage`` would take the pipeline past ``max_jobs`` (None when it would not), at the stage's name.

    ``taken``: the upstream values it takes (jobs kept by ``where``, or files of a list read),
    described by ``source`` (``4 jobs of 'draft'``); None for a stage that needs none.
    ``before``: the jobs of the stages planned before it."""
    own, detail = job_bound(stage.recipe)
    jobs = own if taken is None else taken * own
    if before + jobs <= max_jobs:
        return None
    if taken is not None:
        detail = f"{source} x " + (f"({detail})" if " + " in detail else detail)
    raise_it = "narrow it, or raise the limit with --max-jobs N"
    if before:
        message = (f"stage {stage.name!r} makes up to {count(jobs)} jobs ({detail}): with the {before:,} jobs of "
                   f"the stages before it, {count(before + jobs)} in all, more than the limit of {max_jobs:,}; "
                   f"{raise_it}")
    else:
        message = f"stage {stage.name!r} makes up to {count(jobs)} jobs ({detail}), more than the limit of " \
                  f"{max_jobs:,}; {raise_it}"
    return Diagnostic(stage.pos, message)
