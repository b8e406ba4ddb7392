"""Writing a report: the index page, and beside it a directory of grid pages, problem and
other-job lists, and thumbnails.

1. ``collect`` streams the manifest (and the plan) into job lines on disk, with totals and axes;
2. ``grid.layout`` chooses rows, columns and facets (a bad ``--rows`` stops here, nothing written);
3. each job's images get their thumbnails (made once per content), each job its sort key (``spool``);
4. the sorted jobs are cut into pages (``pages``) and each page is written only when what it shows
   changed: a page carries the digest of its content, read back from the page already on disk;
5. the index is written when its bytes changed; pages left from an earlier, longer report are removed.

Memory holds one manifest bucket, one sort run or one page at a time, never the sweep.

A pipeline's manifest (a plan with stages, or from the output directory alone a manifest whose jobs
name their stage) is written by ``pipewrite`` instead: chains, and a grid per stage.
"""

from __future__ import annotations

import errno
import itertools
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ...core.planning import Plan
from .collect import Collected, collect, open_source
from .grid import Layout, layout, sort_key
from .html import PageLink, Renderer, page_name
from .model import PROBLEM_STATUSES, JobEntry, ReportSummary, parse_entry
from .pagefiles import PageFiles, ReportError, write_html
from .pages import LIST_JOBS, PAGE_JOBS, GridPage, ListPage, grid_pages, list_pages
from .pipewrite import write_pipeline
from .spool import Spool
from .thumbs import Thumbnails, ThumbStats

__all__ = ["REPORT_NAME", "ReportError", "ReportResult", "pages_dir", "report_path", "write_html", "write_report"]

REPORT_NAME = "report.html"
BATCH = 256  # jobs whose thumbnails are made together


@dataclass(frozen=True, slots=True)
class ReportResult:
    index: Path
    pages_dir: Path
    summary: ReportSummary
    pages: int  # grid, problem and other-job pages
    written: int  # pages written this time (the index not counted)
    unchanged: int
    removed: int
    thumbs: ThumbStats


def report_path(out_dir: Path, output: str | os.PathLike[str] | None = None) -> Path:
    """Where the index goes: ``output`` (a file, or a directory to hold ``report.html``),
    else ``out_dir/report.html``."""
    if output is None:
        return Path(out_dir) / REPORT_NAME
    path = Path(output)
    return path / REPORT_NAME if path.is_dir() else path


def pages_dir(index: Path) -> Path:
    """The directory beside the index that holds the other pages: ``report.html`` -> ``report/``."""
    return index.with_suffix("") if index.suffix else index.with_name(index.name + "_files")


def write_report(out_dir: str | os.PathLike[str], plan: Plan | None = None, rows: str | None = None,
                 cols: str | None = None, output: str | os.PathLike[str] | None = None, *,
                 page_jobs: int = PAGE_JOBS, list_jobs: int = LIST_JOBS) -> ReportResult:
    """Collect ``out_dir``'s manifest (with ``plan``: every planned job, run or not) and write the
    report (default ``out_dir/report.html`` and ``out_dir/report/``), rewriting only what changed.
    ``page_jobs`` / ``list_jobs``: the most jobs on one grid page / list page."""
    out = Path(out_dir)
    index = report_path(out, output)
    directory = pages_dir(index)
    # Something in the way: say so before any work, in the words the system would use.
    if index.is_dir():
        raise ReportError(f"{index}: cannot write the report: {os.strerror(errno.EISDIR)}")
    if directory.exists() and not directory.is_dir():
        raise ReportError(f"{directory}: cannot write the report: {os.strerror(errno.ENOTDIR)}")
    try:
        index.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{index.stem}.work-", dir=index.parent))
    except OSError as exc:
        raise ReportError(f"{index}: cannot write the report: {exc.strerror or exc}") from None
    try:
        source = open_source(out, plan, work)
        if plan.stages if plan is not None else source.staged:
            files = PageFiles(directory)
            data, thumbs = write_pipeline(out, plan, source, (rows, cols), index, files, work,
                                          (page_jobs, list_jobs), _mkdir)
            removed = files.remove_stale()
            return ReportResult(index=index, pages_dir=directory, summary=data.summary, pages=len(files.names),
                                written=files.written, unchanged=files.unchanged, removed=removed, thumbs=thumbs)
        collected = collect(out, plan, work, source)
        grid = layout(collected.summary, rows, cols)
        _mkdir(directory)
        return _Writer(collected, grid, index, directory, work, (page_jobs, list_jobs)).write()
    except OSError as exc:  # the work files (a full disk), a thumbnail's directory
        raise ReportError(f"{index}: cannot write the report: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _mkdir(directory: Path) -> None:
    try:
        directory.mkdir(exist_ok=True)
    except OSError as exc:
        raise ReportError(f"{directory}: cannot write the report: {exc.strerror or exc}") from None


class _Writer:
    def __init__(self, collected: Collected, grid: Layout, index: Path, directory: Path, work: Path,
                 bounds: tuple[int, int]) -> None:
        self.collected = collected
        self.page_jobs, self.list_jobs = bounds
        self.summary = collected.summary
        self.grid = grid
        self.index = index
        self.directory = directory
        self.work = work
        self.renderer = Renderer(self.summary, grid, index, directory, self.page_jobs)
        self.files = PageFiles(directory)

    def write(self) -> ReportResult:
        spool = Spool(self.work, "sorted")
        key_index = self.grid.index()
        for line in _lines(self.collected.grid):
            entry = parse_entry(line)
            spool.add(self.grid.key(entry, key_index), line)
            if entry.status in PROBLEM_STATUSES:
                spool.add(sort_key(1, entry.order), line)
        for line in _lines(self.collected.others):
            spool.add(sort_key(2, parse_entry(line).order), line)
        contents: list[PageLink] = []
        lists = {"problems": 0, "others": 0}
        with Thumbnails(self.directory / "thumbs", self.summary.out_dir) as thumbs:
            for section, group in itertools.groupby(spool, key=lambda pair: pair[0][0]):
                jobs = _with_thumbnails(group, thumbs)
                if section == "0":
                    for page in grid_pages(jobs, self.grid, self.page_jobs):
                        contents.append(self.renderer.link(page))
                        self._page(page, page_name("grid", page.number))
                else:
                    kind = "problems" if section == "1" else "others"
                    for listed in list_pages(kind, (job for _, job in jobs), self.list_jobs):
                        lists[kind] += 1
                        self._page(listed, page_name(kind, listed.number))
            stats = thumbs.stats
        self.files.index(self.index, self.renderer.index(contents, lists["problems"], lists["others"]))
        removed = self.files.remove_stale()
        return ReportResult(index=self.index, pages_dir=self.directory, summary=self.summary,
                            pages=len(self.files.names), written=self.files.written, unchanged=self.files.unchanged,
                            removed=removed, thumbs=stats)

    def _page(self, page: GridPage | ListPage, name: str) -> None:
        digest = self.renderer.digest(page)
        self.files.put(name, digest, lambda: self.renderer.page(page, digest))


def _lines(path: Path) -> Iterator[str]:
    with path.open(encoding="ascii") as fh:
        for line in fh:
            yield line.rstrip("\n")


def _with_thumbnails(pairs: Iterable[tuple[str, str]], thumbs: Thumbnails) -> Iterator[tuple[str, JobEntry]]:
    """(key, job line) to (key, job) whose shown images have their thumbnails, made ``BATCH`` jobs at a
    time (so that the worker threads have several images to share)."""
    it = iter(pairs)
    while batch := [(key, parse_entry(line)) for key, line in itertools.islice(it, BATCH)]:
        images = [img for _, job in batch if job.status == "completed" for img in job.images]
        done = iter(thumbs.ensure(images))
        for key, job in batch:
            if job.status == "completed" and job.images:
                yield key, job.with_images(tuple(next(done) for _ in job.images))
            else:
                yield key, job

