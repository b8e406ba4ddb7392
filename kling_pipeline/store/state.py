"""What the manifest says: each job's state, the spend so far and the uploads, by replaying its records.

Pure: records in, state out. A run also folds each record in as it writes it, so the
live state and a replay after a crash are the same function of the same records.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .records import (
    AcceptedRecord,
    AdoptedRecord,
    DoneRecord,
    IntentRecord,
    NotCreatedRecord,
    Record,
    RunEndRecord,
    RunRecord,
    UnknownRecord,
    UploadRecord,
)

__all__ = ["TERMINAL", "JobState", "ManifestState"]

TERMINAL = ("completed", "failed", "cancelled", "rejected")


@dataclass(slots=True)
class JobState:
    """What the manifest says about one job (by content key), after replay."""

    key: str
    job_id: str = ""
    state: str = "new"  # new | intent | submitted | unknown | not_created | completed | failed | cancelled | rejected
    task_id: str | None = None
    reserved: int = 0  # outstanding reservation of the current attempt
    billed: int = 0  # settled over all attempts
    attempts: int = 0  # requests sent for it, in all runs (an intent is written only when one is sent)
    intent: IntentRecord | None = None  # the latest intent
    done: DoneRecord | None = None  # the latest terminal record
    error: str | None = None
    task_ids: list[str] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def in_flight(self) -> bool:
        return self.state == "submitted"

    @property
    def unresolved(self) -> bool:
        """A submit whose outcome is not known: intent without answer, or a lost answer."""
        return self.state in ("intent", "unknown")

    def slim(self) -> None:
        """Forget what a job completed during a run no longer needs in memory: its records (a run
        needs only its state, its billed amount and its task ids; a sweep of 100,000 jobs would
        otherwise hold two kilobytes for each)."""
        self.intent = None
        self.done = None


@dataclass(slots=True)
class ManifestState:
    jobs: dict[str, JobState] = field(default_factory=dict)
    uploads: dict[str, str] = field(default_factory=dict)  # sha256 -> uri
    runs: list[RunRecord] = field(default_factory=list)
    ends: dict[str, RunEndRecord] = field(default_factory=dict)  # run id -> how it ended
    webhook_token: str | None = None
    replaying: bool = False
    slim: bool = False  # jobs completed while the state is live keep no records (a run does not need them)

    @property
    def settled(self) -> int:
        return sum(j.billed for j in self.jobs.values())

    @property
    def reserved(self) -> int:
        return sum(j.reserved for j in self.jobs.values() if not j.terminal and j.state != "not_created")

    def job(self, key: str) -> JobState:
        state = self.jobs.get(key)
        if state is None:
            state = self.jobs[key] = JobState(key)
        return state

    def apply(self, r: Record) -> None:
        """Fold one record into the state (also used live, as records are written)."""
        match r:
            case UploadRecord():
                self.uploads[r.sha256] = r.uri
            case RunRecord():
                self.runs.append(r)
                if r.webhook_token:
                    self.webhook_token = r.webhook_token
            case RunEndRecord():
                self.ends[r.run] = r
            case IntentRecord():
                j = self.job(r.key)
                j.job_id, j.state, j.task_id, j.error = r.job, "intent", None, None
                j.reserved, j.attempts, j.intent = r.reserved_microcents, j.attempts + 1, r
            case AcceptedRecord() | AdoptedRecord():
                j = self.job(r.key)
                j.state, j.task_id = "submitted", r.task
                j.task_ids.append(r.task)
            case UnknownRecord():
                j = self.job(r.key)
                j.state, j.error = "unknown", r.reason
            case NotCreatedRecord():
                j = self.job(r.key)
                j.state, j.reserved, j.error = "not_created", 0, r.reason
            case DoneRecord():
                j = self.job(r.key)
                j.state, j.task_id = r.status, r.task or j.task_id
                j.billed += r.billed_microcents
                j.reserved, j.error, j.done = 0, r.error, r
                if r.job:
                    j.job_id = r.job
                if self.slim and j.state == "completed" and not self.replaying:
                    j.slim()

    @classmethod
    def replay(cls, records: Iterable[Record], *, slim: bool = False) -> ManifestState:
        """The state of ``records``; with ``slim``, jobs that complete later (as the run folds
        its records in) keep no records — those replayed keep theirs, for ``decide`` to look at."""
        state = cls(slim=slim, replaying=True)
        for r in records:
            state.apply(r)
        state.replaying = False
        return state

    def forget(self, keys: Iterable[str]) -> None:
        """Drop the records of these (done) jobs: after a run has decided, it needs only their state."""
        for key in keys:
            job = self.jobs.get(key)
            if job is not None:
                job.slim()

    def claimed_task_ids(self) -> set[str]:
        return {t for j in self.jobs.values() for t in j.task_ids}

    def __iter__(self) -> Iterator[JobState]:
        return iter(self.jobs.values())
