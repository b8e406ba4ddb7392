"""The runs of an output directory, from its manifest: when, how long, what they did and cost.

Pure: manifest records in (in the order written), a frozen ``RunEntry`` per run out;
``history_lines`` and ``history_document`` say it for people and machines
(``kling-pipeline.runs/1``). A run's ``run_end`` record gives the exact figures. A run
without one (killed, crashed, still going, or written by a version before run history)
is reconstructed from the records written between its start and the next run's: its jobs
that ended, what they billed and when the last record was written. The files a run saved
are counted from the ``done`` records of its stretch of the manifest, in either case.
"""

from __future__ import annotations

import datetime as dt
import shlex
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core.money import format_usd, usd_decimal
from ..store.records import DoneRecord, Record, RunEndRecord, RunRecord

__all__ = ["RUNS_FORMAT", "RunEntry", "history_document", "history_lines", "run_history", "run_json", "short_line"]

RUNS_FORMAT = "kling-pipeline.runs/1"
NOT_ENDED = "no end recorded: still running, killed or crashed, or run by a version before run history"


@dataclass(frozen=True, slots=True)
class RunEntry:
    number: int  # 1-based, in the order the runs started
    run: RunRecord
    end: RunEndRecord | None  # None: the run left no end record (see NOT_ENDED)
    counts: Mapping[str, int]  # jobs of this run by outcome
    images: int
    billed: int  # microcents this run settled
    last_at: float  # when its last record was written (its end, when recorded)

    def __str__(self) -> str:
        return short_line(self)

    @property
    def started(self) -> float:
        return self.run.at

    @property
    def ended(self) -> float:
        return self.end.at if self.end is not None else self.last_at

    @property
    def seconds(self) -> float:
        return self.end.seconds if self.end is not None else max(0.0, self.last_at - self.run.at)

    @property
    def exit_code(self) -> int | None:
        return self.end.exit_code if self.end is not None else None


@dataclass(slots=True)
class _Segment:
    run: RunRecord
    counts: Counter[str] = field(default_factory=Counter)
    images: int = 0
    billed: int = 0
    last_at: float = 0.0
    end: RunEndRecord | None = None


def run_history(records: Iterable[Record]) -> list[RunEntry]:
    """Every run the records tell of, in order. Jobs that ended while no run was open
    (a webhook receiver's deliveries) count for the run before them."""
    segments: list[_Segment] = []
    by_id: dict[str, _Segment] = {}
    for r in records:
        if isinstance(r, RunRecord):
            segment = _Segment(r, last_at=r.at)
            segments.append(segment)
            by_id[r.run] = segment
            continue
        if isinstance(r, RunEndRecord):
            if (ended := by_id.get(r.run)) is not None:
                ended.end = r
            continue
        if not segments:
            continue
        current = segments[-1]
        current.last_at = max(current.last_at, r.at)
        if isinstance(r, DoneRecord) and not r.redownload:
            current.counts[r.status] += 1
            current.billed += r.billed_microcents
            if r.status == "completed":
                current.images += len(r.outputs)
    entries = []
    for number, s in enumerate(segments, 1):
        if s.end is not None:
            entries.append(RunEntry(number, s.run, s.end, dict(s.end.counts), s.images,
                                    s.end.billed_microcents, s.end.at))
        else:
            entries.append(RunEntry(number, s.run, None, dict(s.counts), s.images, s.billed, s.last_at))
    return entries


def _when(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _took(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


OTHER_OUTCOMES = ("unknown", "submitted", "cancelled", "interrupted")


def jobs_text(counts: Mapping[str, int]) -> str:
    """``4 done · 1 failed · 7 not run``, then any other outcome that happened."""
    failed = counts.get("failed", 0) + counts.get("rejected", 0)
    parts = [f"{counts.get('completed', 0)} done", f"{failed} failed", f"{counts.get('not_run', 0)} not run"]
    parts += [f"{counts[k]} {k}" for k in OTHER_OUTCOMES if counts.get(k)]
    return " · ".join(parts)


def _flags(e: RunEntry) -> str:
    return shlex.join(e.end.flags) if e.end is not None and e.end.flags else ""


def _exit(e: RunEntry) -> str:
    if e.end is None:
        return "?"
    return "-" if e.end.exit_code is None else str(e.end.exit_code)


def history_lines(entries: list[RunEntry], where: str, *, last: int | None = None) -> Iterator[str]:
    """The runs as a table, oldest first (``last``: only the last N)."""
    shown = entries[-last:] if last else entries
    yield f"{where}: {len(entries)} run{'s' if len(entries) != 1 else ''} recorded" + (
        f" (the last {len(shown)} shown)" if len(shown) < len(entries) else "")
    if not shown:
        return
    rows = [("#", "started", "took", "mode", "exit", "jobs", "images", "billed", "command")]
    for e in shown:
        rows.append((str(e.number), _when(e.started), _took(e.seconds), e.run.mode, _exit(e), jobs_text(e.counts),
                     str(e.images), format_usd(e.billed), _flags(e)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = {0, 4, 6, 7}
    for row in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        yield ("  " + "  ".join(cells)).rstrip()
    unended = [e.number for e in shown if e.end is None]
    if unended:
        yield f"  ? run{'s' if len(unended) != 1 else ''} {', '.join(map(str, unended))}: {NOT_ENDED}"
    for e in shown:
        if e.end is not None and e.end.error:
            yield f"  run {e.number} stopped: {e.end.error}"


def short_line(e: RunEntry) -> str:
    """One run on one line (``status`` shows the last few this way)."""
    code = "" if e.exit_code is None else f" · exit {e.exit_code}"
    end = "" if e.end is not None else " · no end recorded"
    return (f"#{e.number} {_when(e.started)} · took {_took(e.seconds)} · {e.run.mode}{code} · {jobs_text(e.counts)}"
            f" · {e.images} image{'s' if e.images != 1 else ''} · {format_usd(e.billed)} billed{end}")


def run_json(e: RunEntry) -> dict[str, Any]:
    end = e.end
    return {
        "number": e.number,
        "run": e.run.run,
        "mode": e.run.mode,
        "recipe": e.run.recipe,
        "app": e.run.app,
        "tool": e.run.tool,
        "git": None if e.run.git is None else dict(e.run.git),
        "started_at": _iso(e.started),
        "ended_at": _iso(e.ended),
        "seconds": round(e.seconds, 3),
        "end_recorded": end is not None,
        "exit_code": e.exit_code,
        "stop": end.stop or None if end is not None else None,
        "error": end.error if end is not None else None,
        "jobs": dict(e.counts),
        "images": e.images,
        "billed_usd": usd_decimal(e.billed),
        "settled_usd": usd_decimal(end.settled_microcents) if end is not None else None,
        "not_run_usd": usd_decimal(end.not_run_microcents) if end is not None else None,
        "cap_usd": None if e.run.cap_microcents is None else usd_decimal(e.run.cap_microcents),
        "command": list(end.flags) if end is not None else None,
    }


def history_document(entries: list[RunEntry], out_dir: str, manifest: str, *,
                     last: int | None = None) -> dict[str, Any]:
    shown = entries[-last:] if last else entries
    return {"format": RUNS_FORMAT, "out_dir": out_dir, "manifest": manifest, "total": len(entries),
            "runs": [run_json(e) for e in shown]}
