"""``report``: a static HTML gallery of a sweep (a grid over two matrix axes, the rest as facets)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from ..core.errors import KlingError, UsageError
from ..core.money import format_usd
from ..core.planning import Plan, plan_file
from ..store.journal import MANIFEST_NAME
from ..views.report import STATUS_TEXT, ReportData, collect, render_report, report_path, write_html, write_report
from ._exit import EXIT_OK
from ._plan import make_plan

__all__ = ["add_report_parser", "cmd_report", "report_after_run"]


def add_report_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "report", help="write a static HTML gallery of a sweep: a grid over two axes, other axes as facets",
        description="Write a self-contained HTML page of a sweep's images from its manifest. With a RECIPE, "
                    "jobs not run yet are shown too; with an output directory, the manifest alone is read.")
    p.add_argument("target", metavar="RECIPE|OUTDIR")
    p.add_argument("--rows", metavar="AXIS", help="the matrix axis down the grid (default: the first axis "
                   "with more than one value)")
    p.add_argument("--cols", metavar="AXIS", help="the matrix axis across the grid (default: the next one)")
    p.add_argument("-o", "--output", metavar="FILE", help="where to write the page (default: OUTDIR/report.html)")
    p.add_argument("--out", metavar="DIR", help="output directory of the run (with a RECIPE whose run used --out)")
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


def summary(data: ReportData) -> str:
    t = data.totals
    counts = ", ".join(f"{n} {STATUS_TEXT[s]}" for s, n in t.by_status if n) or "none"
    return (f"{t.jobs} job{'s' if t.jobs != 1 else ''} ({counts}); {t.images} image{'s' if t.images != 1 else ''}; "
            f"billed {format_usd(t.billed)} of {format_usd(t.planned)} planned")


def cmd_report(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    plan, out_dir = resolve(args)
    data = collect(out_dir, plan)
    target = report_path(out_dir, args.output)
    write_html(target, render_report(data, rows=args.rows, cols=args.cols, base=target.parent))
    out.write(f"report: {target} — {summary(data)}\n")
    return EXIT_OK


def report_after_run(plan: Plan, err: TextIO) -> Path | None:
    """Write or refresh ``plan``'s report at the end of ``run``; a failure is a warning, not an error
    (the run's own outcome decides the exit code). A plan narrowed by ``--only`` is widened again:
    the page shows the whole sweep, not just the part this run was asked for."""
    try:
        if plan.filtered_out:
            plan = plan_file(plan.recipe.file, out_dir=plan.output_dir, budget_usd=plan.budget_microcents)
        path = write_report(plan.output_dir, plan)
    except (KlingError, OSError) as exc:
        err.write(f"report: not written: {exc}\n")
        return None
    err.write(f"report: {path}\n")
    return path
