"""``report``: a static HTML gallery of a sweep (an index page, grid pages over two matrix axes with
the rest as facets, thumbnails)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from ..core.errors import KlingError, UsageError
from ..core.money import format_usd
from ..core.planning import Plan, plan_file
from ..store.journal import MANIFEST_NAME
from ..views.report import PAGE_JOBS, STATUS_TEXT, ReportResult, write_report
from ._exit import EXIT_OK
from ._flags import add_max_jobs
from ._plan import make_plan

__all__ = ["add_report_parser", "cmd_report", "report_after_run"]


def add_report_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "report", help="write a static HTML gallery of a sweep: a grid over two axes, other axes as facets",
        description="Write a self-contained HTML gallery of a sweep's images from its manifest: an index page "
                    f"and grid pages of at most {PAGE_JOBS} jobs with a thumbnail per image, rewriting only what "
                    "changed since the last report. With a RECIPE, jobs not run yet are shown too; with an "
                    "output directory, the manifest alone is read.")
    p.add_argument("target", metavar="RECIPE|OUTDIR")
    p.add_argument("--rows", metavar="AXIS", help="the matrix axis down the grid (default: the first axis "
                   "with more than one value)")
    p.add_argument("--cols", metavar="AXIS", help="the matrix axis across the grid (default: the next one)")
    p.add_argument("-o", "--output", metavar="FILE", help="where to write the index page (default: "
                   "OUTDIR/report.html; the other pages go in a directory beside it named after it)")
    p.add_argument("--out", metavar="DIR", help="output directory of the run (with a RECIPE whose run used --out)")
    add_max_jobs(p)
    p.set_defaults(func=cmd_report, only=[], budget=None)


def resolve(args: argparse.Namespace) -> tuple[Plan | None, Path]:
    """A recipe file (planned, with its output directory) or an output directory (manifest only)."""
    target = Path(args.target)
    if target.is_dir():
        if args.out is not None:
            raise UsageError("--out goes with a RECIPE; with an output directory, give just the directory")
        if not (target / MANIFEST_NAME).is_file():
            raise UsageError(f"{args.target}: no {MANIFEST_NAME} here; give a recipe file or the output "
                             "directory of a kling-pipeline run")
        return None, target
    args.recipe = args.target
    plan = make_plan(args)
    return plan, plan.output_dir


def _n(count: int, what: str) -> str:
    return f"{count} {what}{'' if count == 1 else 's'}"


def summary(result: ReportResult) -> str:
    """Two lines: the sweep, then what this report wrote."""
    t, thumbs = result.summary.totals, result.thumbs
    counts = ", ".join(f"{n} {STATUS_TEXT[s]}" for s, n in t.by_status if n) or "none"
    images = t.images - t.not_images
    files = _n(images, "image")
    if t.not_images:  # videos, audio, text
        files = f"{files}, {_n(t.not_images, 'other output file')}" if images else _n(t.not_images, "output file")
    sweep = (f"{_n(t.jobs, 'job')} ({counts}); {files}; "
             f"billed {format_usd(t.billed)} of {format_usd(t.planned)} planned")
    wrote = (f"{_n(result.pages, 'page')} ({result.written} written, {result.unchanged} unchanged"
             f"{f', {result.removed} removed' if result.removed else ''}); "
             f"thumbnails: {thumbs.made} made, {thumbs.reused} reused"
             f"{f', {thumbs.unreadable} unreadable' if thumbs.unreadable else ''}")
    return f"{sweep}\n  {wrote}"


def cmd_report(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    plan, out_dir = resolve(args)
    result = write_report(out_dir, plan, rows=args.rows, cols=args.cols, output=args.output)
    out.write(f"report: {result.index} — {summary(result)}\n")
    return EXIT_OK


def report_after_run(plan: Plan, err: TextIO) -> Path | None:
    """Write or refresh ``plan``'s report at the end of ``run``; a failure is a warning, not an error
    (the run's own outcome decides the exit code). A plan narrowed by ``--only`` is widened again:
    the page shows the whole sweep, not just the part this run was asked for."""
    try:
        if plan.filtered_out:
            plan = plan_file(plan.recipe.file, out_dir=plan.output_dir, budget_usd=plan.budget_microcents)
        path = write_report(plan.output_dir, plan).index
    except (KlingError, OSError) as exc:
        err.write(f"report: not written: {exc}\n")
        return None
    err.write(f"report: {path}\n")
    return path
