"""What the Python API returns: each job's outcome, a run's result, a progress snapshot."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from ..core.money import format_usd, usd_decimal
from ..core.planning import Plan
from ..run.outcome import JobResult, RunSummary
from ..store.state import JobState, ManifestState

__all__ = ["JobOutcome", "Progress", "RunResult", "outcomes"]


def _usd(microcents: int) -> Decimal:
    return Decimal(usd_decimal(microcents))


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """One job of the plan after the run (or, for ``status``-like reads, as the manifest has it)."""

    job: str  # the job's id, e.g. "ceramic_mug-watercolor"
    key: str  # its content key
    status: str  # completed | failed | rejected | cancelled | unknown | submitted | interrupted | not_run
    files: tuple[Path, ...] = ()  # the files it saved (in the output directory)
    cost: int = 0  # billed for it so far, over all runs, in microcents (1 USD = 100,000,000)
    combination: Mapping[str, str] = field(default_factory=dict)
    task: str | None = None
    error: str | None = None
    this_run: bool = False  # this run did something for it (submitted, followed, fetched, or held it back)

    @property
    def cost_usd(self) -> Decimal:
        return _usd(self.cost)


@dataclass(frozen=True, slots=True)
class RunResult:
    """A run of a sweep: every job of the plan, in plan order, and the money."""

    jobs: tuple[JobOutcome, ...]
    out_dir: Path
    manifest: Path
    stop_reason: str | None  # None, "budget" or "interrupted"
    spent: int  # billed by this run, microcents
    settled: int  # billed in this output directory in all
    reserved: int  # still reserved (tasks whose outcome is not known)
    cap: int | None
    not_run_cost: int  # what the jobs held back by the budget would cost
    report: Path | None = None

    def __str__(self) -> str:
        counts = Counter(j.status for j in self.jobs)
        jobs = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in counts.items())
        cap = f" of the {format_usd(self.cap)} cap" if self.cap is not None else ""
        stop = f"; stopped: {self.stop_reason}" if self.stop_reason else ""
        return (f"{len(self.jobs)} job{'s' if len(self.jobs) != 1 else ''} ({jobs or 'none'}); "
                f"{format_usd(self.spent)} this run, {format_usd(self.settled)} in all{cap}{stop}; {self.out_dir}")

    def __iter__(self) -> Iterator[JobOutcome]:
        return iter(self.jobs)

    def __len__(self) -> int:
        return len(self.jobs)

    def by_status(self, status: str) -> list[JobOutcome]:
        return [j for j in self.jobs if j.status == status]

    @property
    def files(self) -> list[Path]:
        """Every file of every completed job, in plan order."""
        return [f for j in self.jobs for f in j.files]

    @property
    def ok(self) -> bool:
        """Every job completed."""
        return all(j.status == "completed" for j in self.jobs)

    @property
    def spent_usd(self) -> Decimal:
        return _usd(self.spent)

    @property
    def settled_usd(self) -> Decimal:
        return _usd(self.settled)


@dataclass(frozen=True, slots=True)
class Progress:
    """What ``on_progress`` hears: the event, the job it is about, and the run's totals so far."""

    event: str  # started | accepted | progress | finished | stopping
    job: str | None
    done: int  # jobs finished (any outcome)
    total: int  # jobs this run has to do
    running: int
    failed: int
    images: int
    spent: int  # settled so far in the output directory, microcents
    reserved: int
    cap: int | None
    outcome: JobOutcome | None = None  # with "finished"
    detail: str = ""  # with "stopping": why; with "progress": the percentage


def _state_status(job: JobState | None) -> str:
    if job is None or job.state in ("new", "not_created"):
        return "not_run"
    if job.state in ("intent", "unknown"):
        return "unknown"
    return job.state


def outcome_of(job_id: str, key: str, labels: Mapping[str, str], state: JobState | None, out_dir: Path,
               result: JobResult | None = None, this_run: bool = False) -> JobOutcome:
    status = result.status if result is not None else _state_status(state)
    files: tuple[Path, ...] = ()
    if state is not None and state.done is not None and state.state == "completed":
        files = tuple(out_dir / o.path for o in state.done.outputs if (out_dir / o.path).is_file())
    elif result is not None:
        files = tuple(out_dir / f for f in result.files)
    return JobOutcome(job_id, key, status, files, state.billed if state is not None else result.cost if result else 0,
                      dict(labels), result.task_id if result and result.task_id else state.task_id if state else None,
                      result.error if result is not None else state.error if state is not None else None,
                      this_run or result is not None)


def outcomes(plan: Plan, state: ManifestState, summary: RunSummary | None = None) -> tuple[JobOutcome, ...]:
    """Every job of ``plan`` as the manifest has it after the run, in plan order."""
    results = {r.key: r for r in summary.results} if summary is not None else {}  # (all but the completed)
    touched = {w.key for w in summary.decision.work} if summary is not None and summary.decision else set()
    return tuple(outcome_of(j.id, j.key, j.combination.labels, state.jobs.get(j.key), plan.output_dir,
                            results.get(j.key), j.key in touched) for j in plan.jobs)
