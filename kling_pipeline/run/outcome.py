"""What came of a job, and of a whole run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .budget import LedgerSnapshot
from .pipeline import StageTally
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
    """What a run did: counts by status and money, and the results worth telling one by one
    (every job's but the completed ones: a sweep of 100,000 keeps no 100,000 results)."""

    results: list[JobResult] = field(default_factory=list)  # all but completed
    counts: dict[str, int] = field(default_factory=dict)
    spent_this_run: int = 0
    decision: Decision | None = None
    ledger: LedgerSnapshot | None = None
    stop_reason: str = ""
    fatal: BaseException | None = None
    not_run_cost: int = 0
    manifest: Path | None = None
    stages: list[StageTally] = field(default_factory=list)  # a pipeline's stages, where each stands

    def add(self, result: JobResult) -> None:
        self.counts[result.status] = self.counts.get(result.status, 0) + 1
        self.spent_this_run += result.cost
        if result.status != "completed":
            self.results.append(result)

    def count(self, status: str) -> int:
        return self.counts.get(status, 0)
