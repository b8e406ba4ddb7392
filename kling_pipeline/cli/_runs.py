"""``runs``: the history of an output directory — each run's start, length, command, outcome and cost."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TextIO

from ..core.errors import UsageError
from ..core.loading import load_recipe
from ..core.outnames import output_dir
from ..store.journal import read_records
from ..store.sharding import manifest_name, parse_shard
from ..views.history import history_document, history_lines, run_history
from ._exit import EXIT_OK
from ._flags import job_count

__all__ = ["add_runs_parser", "cmd_runs", "out_dir_of"]


def add_runs_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("runs", help="the runs of an output directory: when, how long, command, jobs, images, cost, "
                                    "exit code")
    p.add_argument("target", metavar="RECIPE|OUTDIR")
    p.add_argument("--out", metavar="DIR", help="output directory (with a RECIPE whose runs used --out)")
    p.add_argument("--shard", metavar="I/N", help="the runs of this shard (its own manifest)")
    p.add_argument("--last", type=job_count, metavar="N", help="only the last N runs")
    p.add_argument("--json", action="store_true", help="one JSON document (format kling-pipeline.runs/1)")
    p.set_defaults(func=cmd_runs)


def out_dir_of(target: str, out: str | None) -> Path:
    """The output directory a RECIPE|OUTDIR argument names; a recipe is only loaded, not planned."""
    path = Path(target)
    if path.is_dir():
        if out is not None:
            raise UsageError("--out goes with a RECIPE; with an output directory, give just the directory")
        return path
    return output_dir(load_recipe(target), out)


def cmd_runs(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    out_dir = out_dir_of(args.target, args.out)
    manifest = out_dir / manifest_name(parse_shard(args.shard))
    if not manifest.is_file():
        raise UsageError(f"{out_dir}: no {manifest.name} here, so no runs yet (`kling-pipeline run` makes one)")
    entries = run_history(read_records(manifest))
    if args.json:
        out.write(json.dumps(history_document(entries, str(out_dir), manifest.name, last=args.last), indent=2) + "\n")
    else:
        for line in history_lines(entries, str(manifest), last=args.last):
            out.write(line + "\n")
    return EXIT_OK
