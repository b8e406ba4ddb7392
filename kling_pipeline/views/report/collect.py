"""The manifest's jobs (and the plan's, when the recipe is known) to ``JobEntry`` lines on disk and a
``ReportSummary`` in memory: totals and axes are tallied as the jobs stream past, one manifest
bucket at a time. The manifest itself is read by ``source`` only."""

from __future__ import annotations

import os
import re
import stat
from array import array
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TextIO

from ...core.errors import KlingError, UsageError
from ...core.jobs import Job
from ...core.planning import Plan
from ...store.journal import MANIFEST_NAME
from .model import STATUSES, TEXT_SHOWN, AxisInfo, ImageRef, JobEntry, ReportSummary, Totals, entry_line, media_of
from .source import ManifestJob, ManifestOutput, ManifestSource, prompt_of

__all__ = ["Collected", "Tally", "collect", "inside", "manifest_entry", "open_source", "plan_entry", "report_status",
           "summary"]

_SHA256 = re.compile(r"[0-9a-f]{64}")


def report_status(state: str) -> str:
    """The report's status for a manifest state."""
    if state in ("completed", "failed", "cancelled", "rejected", "unknown"):
        return state
    if state in ("intent", "submitted"):
        return "in_flight"
    return "not_run"  # new, not_created, or no record at all


@dataclass(frozen=True, slots=True)
class Collected:
    summary: ReportSummary
    grid: Path  # JSON lines of the grid's jobs (``model.entry_line``), in no particular order
    others: Path  # jobs in the manifest but not in the plan


def open_source(out_dir: Path, plan: Plan | None, workdir: Path) -> ManifestSource:
    """``out_dir``'s manifest, scanned into buckets in ``workdir``. Without a plan the manifest must exist.
    With a pipeline's plan, its stages' requests are kept (to find each job's place in the plan)."""
    manifest = out_dir / MANIFEST_NAME
    if plan is None and not manifest.is_file():
        raise UsageError(f"{out_dir}: no {MANIFEST_NAME} here; give the recipe, or the output directory "
                         "of a kling-pipeline run")
    source = ManifestSource(manifest, workdir, requests=plan is not None and bool(plan.stages))
    source.scan()
    return source


def collect(out_dir: Path, plan: Plan | None, workdir: Path, source: ManifestSource | None = None) -> Collected:
    """Read ``out_dir``'s manifest (``source``: already scanned). Without a plan the manifest must
    exist; with one, jobs the manifest does not know are "not run"."""
    if source is None:
        source = open_source(out_dir, plan, workdir)
    by_bucket = [array("L") for _ in range(source.count)]
    for i, job in enumerate(plan.jobs if plan is not None else ()):
        by_bucket[source.bucket_of(job.key)].append(i)
    tally = Tally()
    grid_path, others_path = workdir / "grid.jsonl", workdir / "others.jsonl"
    with grid_path.open("w", encoding="ascii") as grid, others_path.open("w", encoding="ascii") as others:
        for index, jobs in source.buckets():
            if plan is None:
                for mj in jobs:
                    tally.grid(manifest_entry(mj, out_dir, mj.line), mj, grid)
            else:
                _join(plan, by_bucket[index], jobs, out_dir, tally, grid, others)
    return Collected(summary(out_dir, plan, source, tally), grid_path, others_path)


def _join(plan: Plan, planned: array[int], jobs: list[ManifestJob], out_dir: Path, tally: Tally, grid: TextIO,
          others: TextIO) -> None:
    """One bucket: the plan's jobs (``planned``: their indexes) with what the manifest says of them;
    the manifest's other jobs apart, after the plan's in order."""
    known = {mj.key: mj for mj in jobs}
    for i in planned:
        job = plan.jobs[i]
        found = known.pop(job.key, None)
        tally.grid(plan_entry(job, i, found, plan, out_dir), found, grid)
    for mj in known.values():
        tally.other(manifest_entry(mj, out_dir, len(plan.jobs) + mj.line), mj, others)


class Tally:
    """Totals and axes, from the entries as they pass."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(STATUSES, 0)
        self.jobs = self.images = self.missing = self.planned = self.billed = self.reserved = self.others = 0
        self.not_images = 0
        self.per_cell = 1
        self.repeats = False
        self.names: dict[str, int] = {}  # axis -> first order
        self.having: dict[str, int] = {}  # axis -> jobs that have it
        self.values: dict[str, dict[str, int]] = {}  # axis -> value -> first order

    def grid(self, entry: JobEntry, mj: ManifestJob | None, out: TextIO) -> None:
        out.write(entry_line(entry) + "\n")
        self.count(entry)
        self._money(mj)

    def count(self, entry: JobEntry) -> None:
        """A job shown (not its money: ``money``)."""
        self.jobs += 1
        self.counts[entry.status] += 1
        if entry.status == "completed":
            shown = sum(1 for image in entry.images if image.shown)
            self.images += shown
            self.not_images += sum(1 for image in entry.images if image.shown and image.media != "image")
            self.missing += len(entry.images) - shown
        self.planned += entry.planned or 0
        self.per_cell = max(self.per_cell, entry.repeat_index + 1)
        self.repeats = self.repeats or entry.repeat_index > 0
        for name, value in entry.labels:
            if name not in self.names or entry.order < self.names[name]:
                self.names[name] = entry.order
            self.having[name] = self.having.get(name, 0) + 1
            seen = self.values.setdefault(name, {})
            if value not in seen or entry.order < seen[value]:
                seen[value] = entry.order

    def other(self, entry: JobEntry, mj: ManifestJob, out: TextIO) -> None:
        out.write(entry_line(entry) + "\n")
        self.others += 1
        self._money(mj)

    def _money(self, mj: ManifestJob | None) -> None:
        if mj is not None:
            self.money(mj.billed, mj.outstanding)

    def money(self, billed: int, outstanding: int) -> None:
        self.billed += billed
        self.reserved += outstanding

    def axes(self, written: Mapping[str, tuple[str, ...]]) -> tuple[AxisInfo, ...]:
        """The recipe's axes first (values in written order), then keys added by ``include`` or known
        only from the manifest, in first-seen order; values that occur only."""
        names = [n for n in written if n in self.names]
        names += sorted((n for n in self.names if n not in written), key=self.names.__getitem__)
        axes = []
        for name in names:
            seen = self.values[name]
            order = [v for v in written.get(name, ()) if v in seen]
            listed = set(order)
            order += sorted((v for v in seen if v not in listed), key=seen.__getitem__)
            axes.append(AxisInfo(name, tuple(order), self.having[name] < self.jobs))
        return tuple(axes)


def summary(out_dir: Path, plan: Plan | None, source: ManifestSource, tally: Tally) -> ReportSummary:
    last = source.runs[-1] if source.runs else None
    totals = Totals(jobs=tally.jobs, by_status=tuple(tally.counts.items()), images=tally.images,
                    not_images=tally.not_images, images_missing=tally.missing,
                    planned=plan.total_cost if plan is not None else tally.planned,
                    billed=tally.billed, reserved=tally.reserved)
    title: str
    recipe: str | None
    app: str | None
    if plan is not None:
        written = {axis.name: tuple(v.label for v in axis.values) for axis in plan.recipe.matrix.axes}
        title, recipe, app = plan.recipe.name, plan.recipe.file, str(plan.recipe.app)
        axes, cap = tally.axes(written), plan.budget_microcents
    else:
        recipe = last.recipe if last else None
        title = PurePosixPath(recipe).stem if recipe else out_dir.name or str(out_dir)
        app, axes, cap = (last.app if last else None), tally.axes({}), (last.cap if last else None)
    return ReportSummary(title=title, out_dir=out_dir, recipe=recipe, app=app, from_plan=plan is not None,
                         axes=axes, totals=totals, other_jobs=tally.others, cap=cap, runs=len(source.runs),
                         last_run_at=last.at if last else None, per_cell=tally.per_cell, repeats=tally.repeats)


def plan_entry(job: Job, order: int, mj: ManifestJob | None, plan: Plan, out_dir: Path) -> JobEntry:
    labels = tuple(job.combination.labels.items())
    if mj is not None and mj.submitted:
        return _entry(mj, out_dir, labels=labels, job_id=job.id, repeat_index=job.repeat_index, planned=job.cost,
                      order=order)
    prompt: str | None
    try:
        prompt = prompt_of(plan.render(job).request)
    except KlingError:  # a reference file changed since planning: the prompt is still unknown
        prompt = None
    state = mj.state if mj is not None else "none"
    return JobEntry(
        job_id=job.id, labels=labels, repeat_index=job.repeat_index, status=report_status(state), state=state,
        prompt=prompt, planned=job.cost, billed=mj.billed if mj is not None else 0,
        error=mj.error if mj is not None else None, task_id=mj.task_id if mj is not None else None,
        attempts=mj.attempts if mj is not None else 0, order=order,
    )


def manifest_entry(mj: ManifestJob, out_dir: Path, order: int) -> JobEntry:
    return _entry(mj, out_dir, labels=mj.labels, job_id=mj.job_id, repeat_index=mj.repeat_index,
                  planned=mj.reserved, order=order)


def _entry(mj: ManifestJob, out_dir: Path, *, labels: tuple[tuple[str, str], ...], job_id: str,
           repeat_index: int, planned: int | None, order: int) -> JobEntry:
    return JobEntry(
        job_id=job_id, labels=labels, repeat_index=repeat_index, status=report_status(mj.state), state=mj.state,
        images=tuple(_image(o, out_dir) for o in mj.outputs), prompt=mj.prompt, planned=planned,
        billed=mj.billed, error=mj.error, task_id=mj.task_id, attempts=mj.attempts, order=order,
    )


def _image(output: ManifestOutput, out_dir: Path) -> ImageRef:
    """Where the file is and whether its recorded sha256 can name its thumbnail (only when the file
    still has the recorded size; otherwise the thumbnail step hashes the file itself)."""
    path, problem, sha = output.path, None, None
    if not inside(path):
        problem = "outside the output directory"
    else:
        try:
            st = os.stat(os.path.join(out_dir, path))
        except (OSError, ValueError):
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            problem = "missing"
        elif output.sha256 is not None and _SHA256.fullmatch(output.sha256) and output.size == st.st_size:
            sha = output.sha256
    text = _excerpt(os.path.join(out_dir, path)) if problem is None and media_of(output.content_type, path) in (
        "text", "json") else None
    return ImageRef(path=path, content_type=output.content_type, size=output.size, problem=problem, sha256=sha,
                    text=text)


def _excerpt(path: str) -> str | None:
    """The first ``TEXT_SHOWN`` characters of a text output (UTF-8; bytes that are not are replaced)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4 * TEXT_SHOWN)
    except OSError:
        return None
    text = head.decode("utf-8", errors="replace")
    return text[:TEXT_SHOWN] + ("…" if len(text) > TEXT_SHOWN else "")


def inside(path: str) -> bool:
    """A relative path that stays inside the output directory (a manifest is only data)."""
    if not path or "\\" in path or "\x00" in path or path.startswith(("/", "~")) or path[1:2] == ":":
        return False
    return ".." not in PurePosixPath(path).parts and not os.path.isabs(path)
