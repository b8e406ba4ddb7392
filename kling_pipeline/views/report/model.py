"""What a gallery report shows: frozen data, built by ``collect`` and laid out by ``layout``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["STATUSES", "STATUS_TEXT", "AxisInfo", "ImageRef", "JobEntry", "ReportData", "Totals"]

# A job's status in the report, from the manifest's state (see ``collect.report_status``).
STATUSES = ("completed", "failed", "cancelled", "rejected", "unknown", "in_flight", "not_run")
STATUS_TEXT = {
    "completed": "done",
    "failed": "failed",
    "cancelled": "cancelled",
    "rejected": "rejected",
    "unknown": "unknown",
    "in_flight": "in flight",
    "not_run": "not run",
}


@dataclass(frozen=True, slots=True)
class ImageRef:
    """One image file of a completed job."""

    path: str  # relative to the output directory, as the manifest records it (``/``-separated)
    content_type: str | None = None
    size: int | None = None
    problem: str | None = None  # why it cannot be shown: "missing", "outside the output directory"

    @property
    def shown(self) -> bool:
        return self.problem is None


@dataclass(frozen=True, slots=True)
class JobEntry:
    """One job: its place in the matrix, what happened to it, what it cost."""

    job_id: str
    key: str
    labels: tuple[tuple[str, str], ...]  # (axis, value label), in axis order
    repeat_index: int
    status: str  # one of STATUSES
    state: str  # the manifest's own state ("none" when the manifest does not know the job)
    images: tuple[ImageRef, ...] = ()
    prompt: str | None = None
    planned: int | None = None  # microcents: the plan's cost, else the reservation of its last attempt
    billed: int = 0  # microcents settled over all attempts
    error: str | None = None
    task_id: str | None = None
    attempts: int = 0

    def label(self, axis: str) -> str | None:
        for name, value in self.labels:
            if name == axis:
                return value
        return None

    @property
    def status_text(self) -> str:
        return STATUS_TEXT.get(self.status, self.status)


@dataclass(frozen=True, slots=True)
class AxisInfo:
    """A matrix key and its value labels, in order. ``partial``: some jobs do not have it
    (a key added by ``include`` to some combinations only)."""

    name: str
    values: tuple[str, ...]
    partial: bool = False

    @property
    def size(self) -> int:
        return len(self.values) + (1 if self.partial else 0)


@dataclass(frozen=True, slots=True)
class Totals:
    jobs: int
    by_status: tuple[tuple[str, int], ...]  # every status of STATUSES, in that order
    images: int  # image files recorded for completed jobs and present
    images_missing: int  # recorded but not on disk (or not usable)
    planned: int  # microcents: the plan's total, else the sum of the jobs' reservations
    billed: int  # microcents settled, over every job the manifest knows (also those not in the plan)
    reserved: int  # microcents reserved by submits whose outcome is not settled yet

    def count(self, status: str) -> int:
        return dict(self.by_status).get(status, 0)


@dataclass(frozen=True, slots=True)
class ReportData:
    title: str
    out_dir: Path
    recipe: str | None
    app: str | None
    from_plan: bool  # jobs come from the recipe's plan (else from the manifest alone)
    axes: tuple[AxisInfo, ...]
    jobs: tuple[JobEntry, ...]  # the grid's jobs, in plan (or manifest) order
    totals: Totals
    other_jobs: tuple[JobEntry, ...] = ()  # in the manifest but not in the plan (an earlier recipe version)
    cap: int | None = None  # microcents: the budget cap that applies (or the last run's)
    runs: int = 0
    last_run_at: float | None = None  # unix time of the last run record

    def axis(self, name: str) -> AxisInfo | None:
        for axis in self.axes:
            if axis.name == name:
                return axis
        return None
