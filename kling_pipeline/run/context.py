"""What the jobs of one run share, as parts with one job each.

The plan and the options; the API client (with its pacing); the journal and the live
state of the manifest; the budget gate; the stop flag and reachability; the uploader;
the concurrency slots and the tasks being followed; and the run's identity. Built in
one place, ``session.open_run``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..api.client import ApiClient
from ..core.outputs import OutputSpec
from ..core.planning import Plan
from ..core.schemas import Pricing
from ..store.cache import CachedFile, Entry, ResultCache
from ..store.journal import FileWrite, Journal
from ..store.records import AcceptedRecord, AdoptedRecord, DoneRecord, IntentRecord, Record
from ..store.state import ManifestState
from .chain import Chain, StageRun
from .events import Events
from .gate import BudgetGate
from .options import RunOptions
from .reconciler import Reconciler
from .slots import Inflight, Slots
from .stop import Reachability, Stop
from .uploads import Uploader
from .work import Work

__all__ = ["Recorder", "RunContext", "Staged"]


class Recorder:
    """Writes manifest records and folds them into the live state, as one step (telling a
    pipeline's chain what each completed job produced)."""

    def __init__(self, journal: Journal, state: ManifestState, claimed: set[str],
                 on_done: Callable[[DoneRecord], None] | None = None) -> None:
        self._journal, self._state, self._claimed = journal, state, claimed
        self._on_done = on_done

    async def __call__(self, record: Record, files: Sequence[FileWrite] = ()) -> None:
        """Write ``record`` (after ``files``) and fold it into the live state.

        Only an intent is waited for: it must be on disk before its request leaves. Every
        other record is queued; a crash that loses one leaves a job a resume re-attaches
        or reconciles, never one it pays for again.
        """
        if isinstance(record, AcceptedRecord | AdoptedRecord | DoneRecord) and record.task:
            self._claimed.add(record.task)  # a known task is never adopted by another job's reconciliation
        if isinstance(record, IntentRecord):
            await self._journal.append(record)
        else:
            self._journal.post(record, files)
        if self._on_done is not None and isinstance(record, DoneRecord):
            self._on_done(record)
        self._state.apply(record)


@dataclass(frozen=True, slots=True)
class Staged:
    """A job ready to send: its money reserved, its files uploaded (its intent is written
    when its turn to be sent comes, so an intent on disk always means "maybe sent")."""

    request: dict[str, Any]
    files: dict[str, Any]
    attempt: int
    reserved: int


@dataclass(slots=True)
class RunContext:
    plan: Plan
    options: RunOptions
    api: ApiClient
    journal: Journal
    state: ManifestState
    record: Recorder
    gate: BudgetGate
    stop: Stop
    events: Events
    uploader: Uploader
    slots: Slots
    reconciler: Reconciler
    outputs: OutputSpec  # what the app returns, from its output schema
    provenance: Mapping[str, Any]
    run_id: str
    webhook_token: str = ""
    claimed: set[str] = field(default_factory=set)  # task ids some job owns: never adopted by another
    reach: Reachability = field(default_factory=Reachability)
    inflight: Inflight = field(default_factory=Inflight)
    staged: dict[str, Staged] = field(default_factory=dict)  # key -> ready to send
    cache: ResultCache | None = None  # the shared cache of paid results (None: --no-cache)
    stages: Mapping[str, StageRun] = field(default_factory=dict)  # by name ("" for a one-stage recipe)
    chain: Chain | None = None  # a pipeline's downstream jobs, made real as their inputs appear

    def stage_for(self, w: Work) -> StageRun:
        """The stage of ``w``: its app, its prices, what it returns."""
        got = self.stages.get(w.stage)
        if got is not None:
            return got
        return next(iter(self.stages.values()))

    def cache_serve(self, entry: Entry, f: CachedFile, dest: str) -> None:
        assert self.cache is not None
        self.cache.serve(entry, f, Path(dest))

    @property
    def app_ref(self) -> str:
        return str(self.plan.recipe.app)

    @property
    def pricing(self) -> Pricing:
        return self.plan.app.pricing

    @property
    def out_dir(self) -> Path:
        return self.plan.output_dir

    def webhook_for(self, key: str) -> str | None:
        """The job's own webhook URL: the user's, plus this output directory's secret token
        and the job's key, so a receiver can tell genuine deliveries and whose they are."""
        if not self.options.webhook:
            return None
        sep = "&" if "?" in self.options.webhook else "?"
        return f"{self.options.webhook}{sep}kp={self.webhook_token}&job={key[:32]}"
