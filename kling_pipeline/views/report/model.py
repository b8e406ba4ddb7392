"""What a gallery report shows: frozen data. ``collect`` builds it one job at a time, ``grid`` places
the jobs on pages, ``html`` renders them. No stage holds every job: entries travel through temporary
files as JSON lines (``entry_line`` / ``parse_entry``)."""

from __future__ import annotations

import json
import mimetypes
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = [
    "PROBLEM_STATUSES",
    "STATUSES",
    "STATUS_TEXT",
    "AxisInfo",
    "ImageRef",
    "JobEntry",
    "ReportSummary",
    "Totals",
    "entry_line",
    "media_of",
    "parse_entry",
]

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
# Listed apart, on the problem pages: jobs that did not produce an image (and are not simply not run).
PROBLEM_STATUSES = ("failed", "cancelled", "rejected", "unknown", "in_flight")


TEXT_SHOWN = 2000  # characters of a text output shown on the page (the whole file is linked)
_VAGUE = ("", "application/octet-stream", "binary/octet-stream")


def media_of(content_type: str | None, path: str) -> str:
    """How the report shows an output: ``image``, ``video``, ``audio``, ``text``, ``json`` or ``file``
    (by its content type; by its extension when the type says nothing)."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype in _VAGUE:
        ctype = mimetypes.guess_type(PurePosixPath(path).name)[0] or ""
    top = ctype.split("/", 1)[0]
    if top in ("image", "video", "audio"):
        return top
    if ctype == "application/json" or ctype.endswith("+json"):
        return "json"
    return "text" if top == "text" else "file"


@dataclass(frozen=True, slots=True)
class ImageRef:
    """One output file of a completed job (an image, a video, an audio file, a text...)."""

    path: str  # relative to the output directory, as the manifest records it (``/``-separated)
    content_type: str | None = None
    size: int | None = None
    problem: str | None = None  # why it cannot be shown: "missing", "outside the output directory"
    sha256: str | None = None  # as recorded (64 hex digits), when it is one
    thumb: str | None = None  # the thumbnail, relative to the thumbnails directory ("ab/ab12….jpg")
    unreadable: str | None = None  # why no thumbnail could be made (the full image is still linked)
    text: str | None = None  # a text or JSON output: its first TEXT_SHOWN characters

    @property
    def shown(self) -> bool:
        return self.problem is None

    @property
    def media(self) -> str:
        """``image``, ``video``, ``audio``, ``text``, ``json`` or ``file`` (see ``media_of``)."""
        return media_of(self.content_type, self.path)

    def with_thumbnail(self, thumb: str) -> ImageRef:
        return replace(self, thumb=thumb, unreadable=None)


@dataclass(frozen=True, slots=True)
class JobEntry:
    """One job: its place in the matrix, what happened to it, what it cost."""

    job_id: str
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
    order: int = 0  # plan order, else the manifest line that first names the job

    def label(self, axis: str) -> str | None:
        for name, value in self.labels:
            if name == axis:
                return value
        return None

    @property
    def status_text(self) -> str:
        return STATUS_TEXT.get(self.status, self.status)

    def with_images(self, images: tuple[ImageRef, ...]) -> JobEntry:
        return JobEntry(self.job_id, self.labels, self.repeat_index, self.status, self.state, images, self.prompt,
                        self.planned, self.billed, self.error, self.task_id, self.attempts, self.order)

    @property
    def combination(self) -> str:
        """``subject=mug, style=noir`` (empty for the single job of an empty matrix)."""
        return ", ".join(f"{name}={value}" for name, value in self.labels)


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

    @property
    def all_values(self) -> tuple[str | None, ...]:
        """The values with None ("not set") last when some jobs lack the key."""
        return self.values + ((None,) if self.partial else ())


@dataclass(frozen=True, slots=True)
class Totals:
    jobs: int
    by_status: tuple[tuple[str, int], ...]  # every status of STATUSES, in that order
    images: int  # output files (images and others) recorded for completed jobs and present
    images_missing: int  # recorded but not on disk (or not usable)
    planned: int  # microcents: the plan's total, else the sum of the jobs' reservations
    billed: int  # microcents settled, over every job the manifest knows (also those not in the plan)
    reserved: int  # microcents reserved by submits whose outcome is not settled yet
    not_images: int = 0  # of ``images``: the videos, audio, text and other files

    def count(self, status: str) -> int:
        return dict(self.by_status).get(status, 0)

    @property
    def problems(self) -> int:
        return sum(n for status, n in self.by_status if status in PROBLEM_STATUSES)


@dataclass(frozen=True, slots=True)
class ReportSummary:
    """Everything about a sweep except its jobs (those stream through ``entries``)."""

    title: str
    out_dir: Path
    recipe: str | None
    app: str | None
    from_plan: bool  # jobs come from the recipe's plan (else from the manifest alone)
    axes: tuple[AxisInfo, ...]
    totals: Totals
    other_jobs: int = 0  # in the manifest but not in the plan (an earlier recipe version)
    cap: int | None = None  # microcents: the budget cap that applies (or the last run's)
    runs: int = 0
    last_run_at: float | None = None  # unix time of the last run record
    per_cell: int = 1  # jobs that share one combination (the recipe's repeats), at most
    repeats: bool = False  # some job has a repeat index above 0

    def axis(self, name: str) -> AxisInfo | None:
        for axis in self.axes:
            if axis.name == name:
                return axis
        return None


def entry_line(entry: JobEntry) -> str:
    """One ASCII JSON line (``json`` escapes control characters, and lone surrogates a hostile
    manifest may hold)."""
    images = [[i.path, i.content_type, i.size, i.problem, i.sha256, i.thumb, i.unreadable, i.text]
              for i in entry.images]
    return json.dumps([entry.job_id, entry.labels, entry.repeat_index, entry.status, entry.state, images,
                       entry.prompt, entry.planned, entry.billed, entry.error, entry.task_id, entry.attempts,
                       entry.order], separators=(",", ":"))


def parse_entry(line: str) -> JobEntry:
    """The inverse of ``entry_line`` (the report's own temporary files only)."""
    v: list[Any] = json.loads(line)
    images = tuple(ImageRef(*item) for item in v[5])
    return JobEntry(job_id=v[0], labels=tuple((a, b) for a, b in v[1]), repeat_index=v[2], status=v[3],
                    state=v[4], images=images, prompt=v[6], planned=v[7], billed=v[8], error=v[9],
                    task_id=v[10], attempts=v[11], order=v[12])
