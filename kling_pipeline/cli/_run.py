"""``run``: turn a plan into images, under the budget cap, resumable, never paying twice."""

from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from ..core.errors import UsageError
from ..core.money import format_usd
from ..core.planning import Plan
from ..run.options import Mode, RunOptions
from ..run.outcome import RunSummary
from ..run.session import git_provenance, prepare, run_plan
from ..store.cache import default_root
from ..store.sharding import lock_name, manifest_name, parse_shard
from ..views.planview import warning_lines
from ..views.progress import Counters, LiveEvents, make_events
from ._backend import DEFAULT_BASE_URL, backend, run_async
from ._exit import EXIT_BUDGET, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, exit_code
from ._flags import http_url, positive_number, seconds
from ._plan import make_plan
from ._report import report_after_run
from ._status import resolve_target

__all__ = ["add_run_arguments", "backend", "cmd_collect", "cmd_run", "execute"]



def add_run_arguments(p: argparse.ArgumentParser, *, collect: bool = False) -> None:
    if not collect:
        p.add_argument("--emulator", action="store_true",
                       help="run against the bundled emulator on a free loopback port (no API key needed)")
        p.add_argument("--detach", action="store_true",
                       help="submit every job that fits the budget and exit; `collect` fetches the results")
        p.add_argument("--webhook", metavar="URL", type=http_url,
                       help="pass this webhook URL to the API (a per-job secret query is added); "
                            "see `webhook-receiver`")
    p.add_argument("--shard", metavar="I/N", help="only this shard of the jobs (split by content key)")
    p.add_argument("--no-report", action="store_true",
                   help="do not write or refresh report.html at the end (shard runs never do: merge first)")
    p.add_argument("--base-url", metavar="URL", type=http_url,
                   help=f"API endpoint (default: $INFERENCE_BASE_URL or {DEFAULT_BASE_URL})")
    p.add_argument("--concurrency", type=int, metavar="N", help="jobs at once (default: the recipe's concurrency)")
    p.add_argument("--rate", type=positive_number, metavar="PER_S", help="at most this many submits per second")
    p.add_argument("--retry-failed", action="store_true", help="send again jobs that failed in an earlier run")
    p.add_argument("--retry-unknown", action="store_true",
                   help="send again jobs whose earlier submit has an unknown outcome (may pay twice)")
    p.add_argument("--no-reconcile", action="store_true",
                   help="do not look lost submits up in the task listing (they stay unknown)")
    p.add_argument("--reconcile-window", type=seconds, default=120.0, metavar="S",
                   help="how long the task listing may lag behind a submit (default 120)")
    p.add_argument("--cancel-inflight", action="store_true", help="on Ctrl-C, cancel running tasks via the API")
    p.add_argument("--drain-timeout", type=seconds, default=120.0, metavar="S",
                   help="on Ctrl-C, how long to wait for running tasks (default 120)")
    p.add_argument("--connect-grace", type=seconds, default=30.0, metavar="S",
                   help="stop the run when the API cannot be reached for this long (default 30)")
    p.add_argument("--upstream-url-ttl", type=seconds, default=1800.0, metavar="S",
                   help="a pipeline sends an upstream output by the service's URL for this long after it "
                        "completed, then uploads the local file instead (default 1800)")
    p.add_argument("--no-cache", action="store_true",
                   help="do not serve jobs from the shared cache of paid results, nor add to it "
                        "($KLING_PIPELINE_CACHE, default ~/.cache/kling-pipeline/results)")
    p.add_argument("--json", action="store_true", help="one JSON event per line on stdout")


def _options(args: argparse.Namespace, plan: Plan) -> RunOptions:
    concurrency = args.concurrency if args.concurrency is not None else plan.recipe.concurrency
    if concurrency < 1 or concurrency > 4096:
        raise UsageError(f"--concurrency must be between 1 and 4096, got {concurrency}")
    return RunOptions(
        concurrency=concurrency, rate=args.rate, retry_failed=args.retry_failed,
        retry_unknown=args.retry_unknown, reconcile=not args.no_reconcile,
        reconcile_window=args.reconcile_window, cancel_inflight=args.cancel_inflight,
        drain_timeout=args.drain_timeout, webhook=getattr(args, "webhook", None) or plan.recipe.webhook,
        connect_grace=args.connect_grace, cache=None if args.no_cache else str(default_root()),
        upstream_url_ttl=args.upstream_url_ttl,
    )


def _summary_lines(summary: RunSummary, plan: Plan) -> Iterator[str]:
    d = summary.decision
    done_before = len(d.done) if d else 0
    parts = [f"{summary.count('completed')} completed"]
    for status in ("submitted", "failed", "unknown", "cancelled", "rejected", "interrupted", "not_run"):
        if summary.count(status):
            parts.append(f"{summary.count(status)} {status.replace('_', ' ')}")
    if done_before:
        parts.append(f"{done_before} done earlier")
    yield "run: " + ", ".join(parts)
    if summary.ledger is not None:
        s = summary.ledger
        cap = f" of the {format_usd(s.cap)} cap" if s.cap is not None else ""
        yield (f"spend: {format_usd(summary.spent_this_run)} this run; {format_usd(s.settled)} settled"
               f" + {format_usd(s.reserved)} unresolved in total{cap}")
    short = [t for t in summary.stages if t.done < t.planned]
    if summary.stages:
        yield "stages: " + " · ".join(f"{t.name} {t.done}/{t.planned} done"
                                      + (f" ({t.failed} failed)" if t.failed else "") for t in summary.stages)
    if summary.stop_reason == "budget" and summary.stages:
        cut = ", ".join(f"{t.name} ({t.planned - t.done} of {t.planned} not done)" for t in short)
        left = sum(t.left_cost for t in short)
        yield (f"budget stop: cut short: {cut}; finishing would cost at most {format_usd(left)}; "
               "raise budget.max_usd or --budget and run again to continue (nothing done is paid again)")
    elif summary.stop_reason == "budget":
        n = sum(1 for r in summary.results if r.status == "not_run")
        yield (f"budget stop: {n} job{'s' if n != 1 else ''} not run (would cost {format_usd(summary.not_run_cost)}); "
               "raise budget.max_usd or --budget and run again to continue")
    if summary.fatal is not None:
        yield f"stopped: {summary.fatal}"
    unknown = [r for r in summary.results if r.status == "unknown"]
    for r in unknown[:10]:
        yield f"unknown: {r.job_id}: {r.error}"
    failed = [r for r in summary.results if r.status in ("failed", "rejected")]
    for r in failed[:10]:
        yield f"{r.status}: {r.job_id}: {r.error or 'no reason given'}"
    cancelled = [r.job_id for r in summary.results if r.status == "cancelled"]
    if cancelled:
        shown = ", ".join(cancelled[:10]) + (f" and {len(cancelled) - 10} more" if len(cancelled) > 10 else "")
        yield f"cancelled: {shown} (their tasks were cancelled; a plain re-run sends them again)"
    if d and (d.failed or d.unknown):
        yield (f"left alone: {len(d.failed)} failed earlier (--retry-failed), "
               f"{len(d.unknown)} unknown (--retry-unknown)")
    if summary.manifest is not None:
        yield f"manifest: {summary.manifest}"


def _exit_for(summary: RunSummary) -> int:
    if summary.stop_reason == "interrupted":
        return EXIT_INTERRUPTED
    if summary.fatal is not None:
        return exit_code(summary.fatal)
    if summary.stop_reason == "budget":
        return EXIT_BUDGET
    bad = ("failed", "unknown", "rejected", "interrupted")
    d = summary.decision
    if any(r.status in bad for r in summary.results) or (d and (d.failed or d.unknown)):
        return EXIT_FAILED
    return EXIT_OK


def cmd_run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    plan = make_plan(args)
    plan.check_bounded()  # an unknown price without a bound: the budget could not hold
    for line in warning_lines(plan.warnings):
        err.write(line + "\n")
    return execute(args, plan, "detach" if args.detach else "run", out, err)


def cmd_collect(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    plan, _out_dir = resolve_target(args, args.target)
    if plan is None:
        raise UsageError(f"{args.target}: the recipe of this output directory is not known any more; "
                         "give the recipe file instead")
    return execute(args, plan, "collect", out, err)


def collect_command(args: argparse.Namespace, plan: Plan) -> str:
    """The ``collect`` command that picks up what this run left at the service."""
    words = ["kling-pipeline", "collect", plan.recipe.file]
    for flag, value in (("--out", getattr(args, "out", None)), ("--base-url", getattr(args, "base_url", None)),
                        ("--shard", getattr(args, "shard", None))):
        if value:
            words += [flag, str(value)]
    return shlex.join(words)


def ensure_out_dir(path: Path) -> None:
    """The output directory exists (made if need be) and is a directory we can write in."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(f"output directory {path} is a file, not a directory") from None
    except OSError as exc:
        raise UsageError(f"cannot create the output directory {path}: {exc.strerror or exc}") from None
    if not path.is_dir():
        raise UsageError(f"output directory {path} is not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write in the output directory {path}")


def execute(args: argparse.Namespace, plan: Plan, run_mode: Mode, out: TextIO, err: TextIO) -> int:
    """Run, detach or collect ``plan`` (the shared body of those commands)."""
    options = replace(_options(args, plan), mode=run_mode)
    if run_mode == "detach" and getattr(args, "emulator", False):
        raise UsageError("--detach with --emulator leaves tasks that nothing can collect: the bundled emulator "
                         "stops with this command. Run without --detach, or start `kling-pipeline emulator` "
                         "yourself and pass its --base-url")
    ensure_out_dir(plan.output_dir)
    shard = parse_shard(getattr(args, "shard", None))
    manifest, lock = manifest_name(shard), lock_name(shard)
    _state, decision, _path = prepare(plan, options, manifest)
    if decision.nothing_to_do:
        left = len(decision.failed) + len(decision.unknown)
        err.write(f"nothing to do: {len(decision.done)} job{'s' if len(decision.done) != 1 else ''} done"
                  + (f", {left} failed or unknown left alone (--retry-failed / --retry-unknown)" if left else "")
                  + f" ({plan.output_dir})\n")
        if decision.deferred and run_mode == "collect":
            err.write(f"({len(decision.deferred)} jobs not submitted yet: `kling-pipeline run` sends them)\n")
        return EXIT_FAILED if left else EXIT_OK
    provenance = {"recipe": plan.recipe.file, "git": git_provenance(list(plan.recipe.sources))}
    mode = "json" if args.json else ("live" if err.isatty() else "plain")
    with backend(args, err) as (base_url, key):
        events = make_events(mode, out if args.json else err, Counters(len(decision.work) + decision.waiting))

        async def main() -> RunSummary:
            return await run_plan(plan, base_url=base_url, key=key, options=options, events=events,
                                  provenance=provenance, manifest=manifest, lock=lock)

        summary = run_async(main)
        if isinstance(events, LiveEvents):
            events.close()
    for line in _summary_lines(summary, plan):
        err.write(line + "\n")
    if run_mode == "detach" and summary.count("submitted"):
        err.write(f"detached: {summary.count('submitted')} tasks running at the service; "
                  f"`{collect_command(args, plan)}` fetches their results\n")
    if not args.no_report and shard is None and summary.stop_reason != "interrupted":
        report_after_run(plan, err)
    return _exit_for(summary)
