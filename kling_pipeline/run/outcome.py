"""What came of a job, and of a whole run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .budget import LedgerSnapshot
from .work import Decision

__all__ = ["JobResult", "RunSummary"]


@dataclass(frozen=True, slots=True)
class JobResult:
    key: str
    job_id: str
    status: str  # completed | failed | cancelled | rejected | unknown | not_run | interrupted | submitted
    cost: int = 0  # billed (settled) in this run, microcents
    task_id: str | None = None
    error: str | None = None
    files: tuple[str, ...] = ()  # saved outputs, relative to the output directory


@dataclass(slots=True)
class RunSummary:
    results: list[JobResult] = field(default_factory=list)
    decision: Decision | None = None
    ledger: LedgerSnapshot | None = None
    stop_reason: str = ""
    fatal: BaseException | None = None
    not_run_cost: int = 0
    manifest: Path | None = None

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def spent_this_run(self) -> int:
        return sum(r.cost for r in self.results)
