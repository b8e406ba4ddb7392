"""What a run shows while it works: a live line on a TTY, plain log lines otherwise,
or one JSON event per line (``--json``) for machines."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from ..api.apierrors import ApiError
from ..api.pacing import PaceReport, Pacing, per_minute_text
from ..api.wire import TaskView
from ..core.money import format_usd, usd_decimal
from ..run.budget import LedgerSnapshot
from ..run.outcome import JobResult, RunSummary
from ..run.work import Work

__all__ = ["Counters", "JsonEvents", "LiveEvents", "PlainEvents", "make_events", "summary_fields", "write_event"]

OUTCOMES = ("completed", "failed", "rejected", "unknown", "cancelled", "interrupted", "not_run", "submitted")


def write_event(out: TextIO, event: str, fields: dict[str, Any]) -> None:
    """One ``--json`` event line: ``{"event": ..., "time": ..., **fields}``."""
    out.write(json.dumps({"event": event, "time": round(time.time(), 3), **fields}, ensure_ascii=False) + "\n")
    out.flush()


def summary_fields(summary: RunSummary, exit_code: int, *, images: int = 0, report: Path | None = None,
                   error: str | None = None) -> dict[str, Any]:
    """The ``summary`` event that ends ``run --json`` (and ``collect --json``): what this run did
    to each job, what it cost, and the exit code the command returns (``images``: the files
    this run saved, as the display counted them)."""
    counts = summary.counts
    d, s = summary.decision, summary.ledger
    jobs: dict[str, int] = {status: counts.get(status, 0) for status in OUTCOMES}
    jobs |= {"done_earlier": len(d.done) if d else 0, "failed_left": len(d.failed) if d else 0,
             "unknown_left": len(d.unknown) if d else 0}

    def usd(value: int | None) -> str | None:
        return None if value is None else usd_decimal(value)

    fatal = None if summary.fatal is None else str(summary.fatal)
    return {
        "exit_code": exit_code,
        "stop_reason": summary.stop_reason or None,
        "error": error or fatal,
        "jobs": jobs,
        "images": images,
        "spend": {"this_run_usd": usd_decimal(summary.spent_this_run),
                  "settled_usd": usd(s.settled if s else None), "reserved_usd": usd(s.reserved if s else None),
                  "cap_usd": usd(s.cap if s else None), "not_run_usd": usd_decimal(summary.not_run_cost)},
        "manifest": None if summary.manifest is None else str(summary.manifest),
        "report": None if report is None else str(report),
    }


class Counters:
    """Running totals for the display."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.ledger: Callable[[], LedgerSnapshot] = lambda: LedgerSnapshot(None, 0, 0)
        self.pacing: Pacing | None = None
        self.listing_waiting = 0  # lost submits waiting for the task listing
        self.listing_until: float | None = None  # (monotonic) when the last of them stops waiting
        self.started = self.finished = self.completed = self.failed = self.images = self.accepted = 0
        self.progress: dict[str, float] = {}
        self.t0 = time.monotonic()

    def finish(self, w: Work, result: JobResult) -> None:
        self.finished += 1
        self.progress.pop(w.key, None)
        if result.status == "completed":
            self.completed += 1
            self.images += len(result.files)
        elif result.status not in ("not_run", "interrupted"):
            self.failed += 1

    def runs_pace(self) -> PaceReport | None:
        """The runs pacer's report while the service's limit paces the submits, else None."""
        if self.pacing is None:
            return None
        report = self.pacing.runs.report()
        return report if report.paced_by_service and report.per_minute else None

    def eta(self) -> str:
        done = self.finished + sum(p / 100 for p in self.progress.values())
        left = None
        if done >= 1:
            left = (time.monotonic() - self.t0) / done * max(0.0, self.total - done)
        pace = self.runs_pace()
        if pace is not None and pace.per_minute:  # submits still to go, at the rate the service allows
            by_rate = max(0, self.total - self.accepted) / (pace.per_minute / 60.0)
            left = by_rate if left is None else max(left, by_rate)
        if left is None:
            return "--:--"
        return f"{int(left // 60)}:{int(left % 60):02d}"

    def line(self) -> str:
        s = self.ledger()
        cap = f" / {format_usd(s.cap)} cap" if s.cap is not None else ""
        running = self.started - self.finished
        pace = self.runs_pace()
        paced = f" · paced by the service: {per_minute_text(pace.per_minute)} runs/min" if pace else ""
        listing = ""
        if self.listing_waiting:
            left = max(0, round((self.listing_until or 0) - time.monotonic()))
            listing = f" · {self.listing_waiting} waiting for the task listing (at most {left}s)"
        return (f"jobs {self.finished}/{self.total} · {running} running · {self.failed} failed · "
                f"{self.images} images · {format_usd(s.settled)} spent + {format_usd(s.reserved)} reserved{cap}"
                f"{paced}{listing} · ETA {self.eta()}")


class PlainEvents:
    """One log line per finished job and per notable event (CI logs, pipes)."""

    def __init__(self, out: TextIO, counters: Counters) -> None:
        self.out = out
        self.c = counters

    def _say(self, text: str) -> None:
        self.out.write(text + "\n")  # stderr is line-buffered: no flush needed per line

    def attach(self, ledger: Callable[[], LedgerSnapshot], pacing: Pacing | None = None) -> None:
        self.c.ledger = ledger
        self.c.pacing = pacing

    def started(self, w: Work) -> None:
        self.c.started += 1

    def submitting(self, w: Work, retry: int) -> None:
        pass

    def accepted(self, w: Work, task_id: str) -> None:
        self.c.accepted += 1

    def pacing(self, report: PaceReport) -> None:
        if report.paced_by_service:
            rate = f" (about {per_minute_text(report.per_minute)} {report.kind}/min)" if report.per_minute else ""
            self._say(f"paced by the service: its rate limit on {report.kind}, not concurrency, sets the pace{rate}")
        else:
            self._say(f"no longer paced by the service's limit on {report.kind}")

    def progress(self, w: Work, view: TaskView) -> None:
        if view.progress is not None:
            self.c.progress[w.key] = view.progress

    def throttled(self, w: Work, exc: ApiError, delay: float) -> None:
        what = "rate limited" if exc.status == 429 else "held back"
        self._say(f"{what}: {exc} — nothing was created; submits wait {delay:.1f}s, then go one by one")

    def unknown(self, w: Work, reason: str) -> None:
        self._say(f"unknown   {w.job_id}: {reason} — reconciling through the task listing")

    def listing(self, waiting: int, until: float | None) -> None:
        self.c.listing_waiting, self.c.listing_until = waiting, until

    def resubmit(self, w: Work) -> None:
        self._say(f"resubmit  {w.job_id}: the lost submit created no task")

    def finished(self, w: Work, result: JobResult) -> None:
        self.c.finish(w, result)
        n = f"[{self.c.finished}/{self.c.total}]" if self.c.total else "webhook"
        if result.status == "completed":
            where = f" -> {', '.join(result.files)}" if result.files else ""
            self._say(f"{n} done      {w.job_id}  {format_usd(result.cost)}{where}")
        elif result.status != "not_run":
            self._say(f"{n} {result.status:<9} {w.job_id}: {result.error or ''}")

    def stopping(self, reason: str, detail: str) -> None:
        text = {"budget": "budget reached: no new submits; waiting for running jobs",
                "interrupted": "interrupted: no new submits; waiting for running jobs (Ctrl-C again to quit now)"}
        self._say(text.get(reason, f"stopping: {detail or reason}"))


class LiveEvents(PlainEvents):
    """A status line redrawn in place (at most 10 times a second), problems printed above it."""

    def __init__(self, out: TextIO, counters: Counters) -> None:
        super().__init__(out, counters)
        self._last = 0.0

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= 0.1:
            self._last = now
            self.out.write("\r\x1b[2K" + self.c.line()[:200])
            self.out.flush()

    def _say(self, text: str) -> None:
        self.out.write("\r\x1b[2K" + text + "\n")
        self._draw(force=True)

    def started(self, w: Work) -> None:
        super().started(w)
        self._draw()

    def progress(self, w: Work, view: TaskView) -> None:
        super().progress(w, view)
        self._draw()

    def finished(self, w: Work, result: JobResult) -> None:
        self.c.finish(w, result)
        if result.status not in ("completed", "not_run"):
            self._say(f"{result.status:<9} {w.job_id}: {result.error or ''}")
        self._draw()

    def close(self) -> None:
        self._draw(force=True)
        self.out.write("\n")


class JsonEvents:
    """One JSON object per line: ``{"event": ..., "job": ..., ...}``."""

    def __init__(self, out: TextIO, counters: Counters) -> None:
        self.out = out
        self.c = counters

    def _emit(self, event: str, **fields: Any) -> None:
        write_event(self.out, event, fields)

    def attach(self, ledger: Callable[[], LedgerSnapshot], pacing: Pacing | None = None) -> None:
        self.c.ledger = ledger
        self.c.pacing = pacing

    def started(self, w: Work) -> None:
        self.c.started += 1
        self._emit("started", job=w.job_id, key=w.key, action=w.action.value)

    def submitting(self, w: Work, retry: int) -> None:
        self._emit("submitting", job=w.job_id, retry=retry)

    def accepted(self, w: Work, task_id: str) -> None:
        self.c.accepted += 1
        self._emit("accepted", job=w.job_id, task=task_id)

    def pacing(self, report: PaceReport) -> None:
        """The service's limit (not concurrency) starts or stops setting the pace of a class of calls."""
        self._emit("pacing", kind=report.kind, paced_by_service=report.paced_by_service,
                   per_minute=None if report.per_minute is None else round(report.per_minute, 1),
                   limit=report.limit, throttles=report.throttles, eta=self.c.eta())

    def progress(self, w: Work, view: TaskView) -> None:
        self._emit("progress", job=w.job_id, task=view.id, status=view.status.value, progress=view.progress)

    def throttled(self, w: Work, exc: ApiError, delay: float) -> None:
        self._emit("throttled", job=w.job_id, status=exc.status, delay=round(delay, 3), detail=str(exc))

    def unknown(self, w: Work, reason: str) -> None:
        self._emit("unknown", job=w.job_id, reason=reason)

    def listing(self, waiting: int, until: float | None) -> None:
        """Lost submits waiting for the task listing, and at most how long (seconds) they wait."""
        self.c.listing_waiting, self.c.listing_until = waiting, until
        left = None if until is None else round(max(0.0, until - time.monotonic()), 1)
        self._emit("listing", waiting=waiting, at_most_seconds=left)

    def resubmit(self, w: Work) -> None:
        self._emit("resubmit", job=w.job_id)

    def finished(self, w: Work, result: JobResult) -> None:
        self.c.finish(w, result)
        self._emit("finished", job=w.job_id, key=w.key, status=result.status, task=result.task_id,
                   cost_usd=usd_decimal(result.cost), images=list(result.files), error=result.error)

    def stopping(self, reason: str, detail: str) -> None:
        self._emit("stopping", reason=reason, detail=detail)


def make_events(mode: str, out: TextIO, counters: Counters) -> PlainEvents | JsonEvents:
    if mode == "json":
        return JsonEvents(out, counters)
    if mode == "live":
        return LiveEvents(out, counters)
    return PlainEvents(out, counters)
