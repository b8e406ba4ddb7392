"""From an output directory's manifest (and the plan, when the recipe is known) to ``ReportData``.

The only I/O: reading the manifest and checking that recorded images exist.
``build_report_data`` is the pure part, from a replayed manifest.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from ...core.errors import KlingError, UsageError
from ...core.jobs import Job
from ...core.planning import Plan
from ...store.journal import MANIFEST_NAME, read_records
from ...store.records import OutputEntry
from ...store.state import JobState, ManifestState
from .model import STATUSES, AxisInfo, ImageRef, JobEntry, ReportData, Totals

__all__ = ["build_report_data", "collect", "report_status"]

Exists = Callable[[str], bool]


def report_status(state: str) -> str:
    """The report's status for a manifest state."""
    if state in ("completed", "failed", "cancelled", "rejected", "unknown"):
        return state
    if state in ("intent", "submitted"):
        return "in_flight"
    return "not_run"  # new, not_created, or no record at all


def collect(out_dir: Path, plan: Plan | None = None) -> ReportData:
    """Read ``out_dir``'s manifest. Without a plan the manifest must exist; with one, jobs the
    manifest does not know are "not run"."""
    out_dir = Path(out_dir)
    manifest = out_dir / MANIFEST_NAME
    if plan is None and not manifest.is_file():
        raise UsageError(f"{out_dir}: no {MANIFEST_NAME} here; give the recipe, or the output directory "
                         "of a kling-pipeline run")
    state = ManifestState.replay(read_records(manifest))
    return build_report_data(out_dir, state, plan, exists=lambda rel: (out_dir / rel).is_file())


def build_report_data(out_dir: Path, state: ManifestState, plan: Plan | None = None, *,
                      exists: Exists | None = None) -> ReportData:
    """Pure, given ``exists`` (is this file, relative to ``out_dir``, present?)."""
    present: Exists = exists or (lambda _rel: True)
    last_run = state.runs[-1] if state.runs else None
    recipe: str | None
    app: str | None
    if plan is not None:
        keys = {job.key for job in plan.jobs}
        jobs = tuple(_plan_entry(job, state.jobs.get(job.key), plan, present) for job in plan.jobs)
        others = tuple(_manifest_entry(j, present) for j in state.jobs.values() if j.key not in keys)
        axes = _axes(jobs, _plan_axis_order(plan))
        title, recipe, app = plan.recipe.name, plan.recipe.file, str(plan.recipe.app)
        cap, planned = plan.budget_microcents, plan.total_cost
    else:
        jobs = tuple(_manifest_entry(j, present) for j in state.jobs.values())
        others = ()
        axes = _axes(jobs, {})
        recipe = _str_or_none(last_run.recipe if last_run else None)
        title = PurePosixPath(recipe).stem if recipe else out_dir.name or str(out_dir)
        app = _str_or_none(last_run.app if last_run else None)
        cap = last_run.cap_microcents if last_run else None
        planned = sum(j.planned or 0 for j in jobs)
    counts = dict.fromkeys(STATUSES, 0)
    for entry in jobs:
        counts[entry.status] += 1
    done_images = [img for entry in jobs if entry.status == "completed" for img in entry.images]
    at = last_run.at if last_run else None
    totals = Totals(
        jobs=len(jobs), by_status=tuple(counts.items()),
        images=sum(1 for img in done_images if img.shown),
        images_missing=sum(1 for img in done_images if not img.shown),
        planned=planned, billed=state.settled, reserved=state.reserved,
    )
    return ReportData(
        title=title, out_dir=out_dir, recipe=recipe, app=app, from_plan=plan is not None, axes=axes,
        jobs=jobs, totals=totals, other_jobs=others, cap=cap, runs=len(state.runs),
        last_run_at=float(at) if isinstance(at, int | float) and not isinstance(at, bool) else None,
    )


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _plan_entry(job: Job, js: JobState | None, plan: Plan, present: Exists) -> JobEntry:
    if js is not None and js.intent:
        return _entry(js, present, labels=tuple(job.combination.labels.items()), job_id=job.id,
                      repeat_index=job.repeat_index, planned=job.cost)
    prompt: str | None
    try:
        value = plan.render(job).request.get("prompt")
        prompt = value if isinstance(value, str) else None
    except KlingError:  # a reference file changed since planning: the prompt is still unknown
        prompt = None
    state = js.state if js is not None else "none"
    return JobEntry(
        job_id=job.id, key=job.key, labels=tuple(job.combination.labels.items()), repeat_index=job.repeat_index,
        status=report_status(state), state=state, prompt=prompt, planned=job.cost,
        billed=js.billed if js is not None else 0, error=js.error if js is not None else None,
        task_id=js.task_id if js is not None else None, attempts=js.attempts if js is not None else 0,
    )


def _manifest_entry(js: JobState, present: Exists) -> JobEntry:
    intent = js.intent
    labels = tuple(intent.combination.items()) if intent is not None else ()
    return _entry(js, present, labels=labels, job_id=js.job_id or js.key[:10],
                  repeat_index=intent.repeat_index if intent is not None else 0,
                  planned=intent.reserved_microcents if intent is not None else None)


def _entry(js: JobState, present: Exists, *, labels: tuple[tuple[str, str], ...], job_id: str,
           repeat_index: int, planned: int | None) -> JobEntry:
    prompt = js.intent.input.get("prompt") if js.intent is not None else None
    images = _images(js.done.outputs, present) if js.state == "completed" and js.done is not None else ()
    return JobEntry(
        job_id=job_id, key=js.key, labels=labels, repeat_index=repeat_index, status=report_status(js.state),
        state=js.state, images=images, prompt=prompt if isinstance(prompt, str) else None, planned=planned,
        billed=js.billed, error=js.error, task_id=js.task_id, attempts=js.attempts,
    )


def _images(outputs: tuple[OutputEntry, ...], present: Exists) -> tuple[ImageRef, ...]:
    refs = []
    for item in outputs:
        problem = None
        if not _inside(item.path):
            problem = "outside the output directory"
        elif not present(item.path):
            problem = "missing"
        refs.append(ImageRef(path=item.path, content_type=item.content_type or None,
                             size=item.size if item.size >= 0 else None, problem=problem))
    return tuple(refs)


def _inside(path: str) -> bool:
    """A relative path that stays inside the output directory (a manifest is only data)."""
    if not path or "\\" in path or "\x00" in path or path.startswith(("/", "~")) or path[1:2] == ":":
        return False
    return ".." not in PurePosixPath(path).parts and not os.path.isabs(path)


def _plan_axis_order(plan: Plan) -> dict[str, tuple[str, ...]]:
    """Axis name -> value labels as the recipe writes them."""
    return {axis.name: tuple(v.label for v in axis.values) for axis in plan.recipe.matrix.axes}


def _axes(jobs: Iterable[JobEntry], written: Mapping[str, tuple[str, ...]]) -> tuple[AxisInfo, ...]:
    """Every matrix key the jobs have: the recipe's axes first (values in written order), then keys
    added by ``include`` or known only from the manifest, in first-seen order; values that occur only."""
    seen: dict[str, dict[str, None]] = {name: {} for name in written}
    jobs = list(jobs)
    for entry in jobs:
        for name, value in entry.labels:
            seen.setdefault(name, {})[value] = None
    axes = []
    for name, values in seen.items():
        if not values:
            continue
        order = [v for v in written.get(name, ()) if v in values]
        order += [v for v in values if v not in order]
        partial = any(entry.label(name) is None for entry in jobs)
        axes.append(AxisInfo(name, tuple(order), partial))
    return tuple(axes)
