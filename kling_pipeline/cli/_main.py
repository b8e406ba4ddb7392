"""Argument parsing and dispatch. Commands live in their own modules."""

from __future__ import annotations

import argparse
import importlib
import io
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO, TypeAlias, cast

from .. import __version__
from ._exit import report
from ._flags import add_max_job_usd, add_max_jobs, http_url

__all__ = ["build_parser", "main"]

Command = Callable[[argparse.Namespace, TextIO, TextIO], int]
SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _module(name: str) -> Any:
    """A command's module, imported only when its command is built: ``plan`` and ``validate``
    load no HTTP client, run layer or report writer (a third of a second at every start)."""
    return importlib.import_module(f"{__package__}.{name}")


def _recipe_args(p: argparse.ArgumentParser) -> None:
    add_max_jobs(p)
    p.add_argument("--only", action="append", default=[], metavar="AXIS=VALUE",
                   help="keep only combinations where AXIS has VALUE (repeatable; same axis = any of)")
    p.add_argument("--budget", metavar="USD", help="spend cap in USD (the lower of this and the recipe's wins)")
    p.add_argument("--out", metavar="DIR", help="output directory (default: the recipe's output.dir)")
    add_max_job_usd(p)


def _add_validate(sub: SubParsers) -> None:
    p = sub.add_parser("validate", help="check recipes (YAML, shape, templates, API schema, files); exit 2 if invalid")
    p.add_argument("recipes", nargs="+", metavar="RECIPE")
    add_max_jobs(p)
    p.add_argument("--json", action="store_true",
                   help="one JSON document: each recipe's jobs and cost, or its errors "
                        "(format kling-pipeline.validate/1)")
    p.set_defaults(func=_module("_plan").cmd_validate)


def _add_plan(sub: SubParsers) -> None:
    p = sub.add_parser("plan", help="list the jobs, the exact cost and the budget verdict; nothing is sent")
    p.add_argument("recipe", metavar="RECIPE")
    _recipe_args(p)
    p.add_argument("--json", action="store_true",
                   help="print the plan as one JSON document (format kling-pipeline.plan/1), each job with the "
                        "request it will send")
    p.add_argument("--no-requests", action="store_true",
                   help="with --json: leave each job's rendered request out (a faster plan of a huge sweep)")
    p.add_argument("--no-cache", action="store_true",
                   help="leave the shared result cache out of the plan (as run --no-cache will)")
    p.add_argument("--rows", type=int, default=20, metavar="N",
                   help="rows of jobs and axis values to show (default 20)")
    p.add_argument("--shard", metavar="I/N", help="only this shard of the jobs (split by content key)")
    p.add_argument("--check-prices", action="store_true",
                   help="compare the price table with the service's estimate endpoint (exit 1 if they differ)")
    p.add_argument("--emulator", action="store_true", help="with --check-prices: ask the bundled emulator")
    p.add_argument("--base-url", metavar="URL", type=http_url, help="with --check-prices: the API endpoint")
    p.add_argument("--profile", metavar="NAME", help="with --check-prices: a profile of the config file")
    p.set_defaults(func=_module("_plan").cmd_plan)


def _add_run(sub: SubParsers) -> None:
    p = sub.add_parser("run", help="run the sweep: concurrent, budget-capped, resumable, never paying twice")
    p.add_argument("recipe", metavar="RECIPE")
    _recipe_args(p)
    _module("_run").add_run_arguments(p)
    p.set_defaults(func=_module("_run").cmd_run)


def _add_collect(sub: SubParsers) -> None:
    p = sub.add_parser("collect", help="re-attach to every submitted task (after run --detach), download, settle")
    p.add_argument("target", metavar="RECIPE|OUTDIR")
    p.add_argument("--out", metavar="DIR", help="output directory (with a RECIPE)")
    p.add_argument("--budget", metavar="USD", help="spend cap in USD")
    add_max_jobs(p)
    _module("_run").add_run_arguments(p, collect=True)
    p.set_defaults(func=_module("_run").cmd_collect, only=[])


def _add_merge(sub: SubParsers) -> None:
    p = sub.add_parser("merge", help="fold shard manifests (manifest.shard-I-of-N.jsonl) into manifest.jsonl")
    p.add_argument("out_dir", metavar="OUTDIR")
    p.add_argument("manifests", nargs="*", metavar="MANIFEST", help="more shard manifests to fold in")
    p.set_defaults(func=_merge)


def _add_emulator(sub: SubParsers) -> None:
    p = sub.add_parser("emulator", add_help=False, help="serve the bundled inference.sh emulator on loopback")
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_emulator)


def _from(module: str, adder: str) -> Callable[[SubParsers], None]:
    def add(sub: SubParsers) -> None:  # the module is imported only when its command is built
        getattr(_module(module), adder)(sub)

    return add


# every command, in the order --help lists them
COMMANDS: dict[str, Callable[[SubParsers], None]] = {
    "validate": _add_validate,
    "plan": _add_plan,
    "run": _add_run,
    "collect": _add_collect,
    "status": _from("_status", "add_status_parser"),
    "runs": _from("_runs", "add_runs_parser"),
    "doctor": _from("_doctor", "add_doctor_parser"),
    "prune": _from("_prune", "add_prune_parser"),
    "schema": _from("_schema", "add_schema_parser"),
    "completion": _from("_complete", "add_completion_parser"),
    "report": _from("_report", "add_report_parser"),
    "webhook-receiver": _from("_webhook", "add_webhook_parser"),
    "merge": _add_merge,
    "emulator": _add_emulator,
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or with ``command`` only that command's (all a command line that
    names it needs: the others' modules are not imported)."""
    parser = argparse.ArgumentParser(
        prog="kling-pipeline",
        description="Declarative, budget-capped image-generation sweeps on the inference.sh API.",
        epilog="exit codes: 0 done, 1 some jobs failed, 2 invalid input, 3 budget stop, 130 interrupted",
    )
    parser.add_argument("--version", action="version", version=f"kling-pipeline {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    for name, add in COMMANDS.items():
        if command is None or name == command:
            add(sub)
    return parser


def _merge(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from pathlib import Path

    from ..store.sharding import merge_manifests

    target, files, added = merge_manifests(Path(args.out_dir), [Path(m) for m in args.manifests])
    out.write(f"{target}: {added} records added from {files} shard manifest{'s' if files != 1 else ''}\n")
    return 0


def _emulator(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ..emulator.cli import main as emulator_main

    code: int = emulator_main(list(args.args))
    return code


class _ClosedPipeTolerant(io.TextIOBase):
    """Standard output that may be closed early by its reader (``plan ... | head -1``): the
    rest is dropped, and the command goes on to return the exit code it would have."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._gone = False

    def write(self, text: str) -> int:
        if not self._gone:
            try:
                self._stream.write(text)
            except BrokenPipeError:
                self._gone = True
                # later writes (and the interpreter's flush at exit) go nowhere instead of failing
                os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())
        return len(text)

    def flush(self) -> None:
        if not self._gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._gone = True
                os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())

    def isatty(self) -> bool:
        return self._stream.isatty()


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run one command; return its exit code. Never raises for a user error."""
    out = out or cast(TextIO, _ClosedPipeTolerant(sys.stdout))
    err = err or sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    if "_ARGCOMPLETE" in os.environ:  # the shell asks for completions (`kling-pipeline completion SHELL`)
        _module("_complete").complete(build_parser())
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    try:
        if argv[:1] == ["emulator"]:  # the emulator parses its own flags (and --help)
            return _emulator(argparse.Namespace(args=argv[1:]), out, err)
        args = parser.parse_args(argv)
        args.argv = tuple(argv)  # the command line as given (a run's history records it)
        func: Command = args.func
        return func(args, out, err)
    except SystemExit as exc:  # argparse: --help, --version, bad usage (exit 2)
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    except BrokenPipeError:  # a stream other than standard output was closed early
        return 0
    except BaseException as exc:
        return report(exc, err)
