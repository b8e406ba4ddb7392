"""``status``: where a sweep stands, and what a resume would do and cost."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TextIO

from ..core.errors import UsageError
from ..core.planning import Plan
from ..store.journal import read_records
from ..store.records import RunRecord
from ..store.sharding import manifest_name, parse_shard
from ..store.state import ManifestState
from ..views.history import run_history
from ..views.status import compute_status, status_document, status_lines
from ._flags import add_max_jobs
from ._plan import make_plan

__all__ = ["add_status_parser", "cmd_status", "resolve_target"]


def resolve_target(args: argparse.Namespace, target: str) -> tuple[Plan | None, Path]:
    """A recipe file (planned, with its output directory) or an output directory (its
    recipe taken from the manifest's last run record when that file still exists)."""
    path = Path(target)
    if path.is_dir():
        manifest = path / manifest_name(parse_shard(getattr(args, "shard", None)))
        if not manifest.is_file():
            raise UsageError(f"{target}: no {manifest.name} here; give a recipe file or an output directory "
                             "of a kling-pipeline run")
        runs = [r for r in read_records(manifest) if isinstance(r, RunRecord)]
        recipe = runs[-1].recipe_path if runs else None
        if isinstance(recipe, str) and Path(recipe).is_file():
            args.recipe, args.out = recipe, str(path)
            return make_plan(args), path
        return None, path
    args.recipe = target
    plan = make_plan(args)
    return plan, plan.output_dir


def add_status_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", help="counts per state, spend against the cap, what a resume would do")
    p.add_argument("target", metavar="RECIPE|OUTDIR")
    p.add_argument("--out", metavar="DIR", help="output directory (with a RECIPE)")
    p.add_argument("--budget", metavar="USD", help="the cap to compare against (the lower of this and the recipe's)")
    p.add_argument("--shard", metavar="I/N", help="this shard's jobs and manifest")
    p.add_argument("--json", action="store_true", help="one JSON document (format kling-pipeline.status/1)")
    add_max_jobs(p)
    p.set_defaults(func=cmd_status, only=[])


def cmd_status(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    plan, out_dir = resolve_target(args, args.target)
    records = read_records(out_dir / manifest_name(parse_shard(args.shard)))
    state = ManifestState.replay(records)
    status = compute_status(out_dir, state, plan, run_history(records))
    if args.json:
        out.write(json.dumps(status_document(status), indent=2) + "\n")
    else:
        for line in status_lines(status):
            out.write(line + "\n")
    return 0
