"""A run's events, as ``Progress`` snapshots handed to the caller's ``on_progress``."""

from __future__ import annotations

from collections.abc import Callable

from ..api.apierrors import ApiError
from ..api.pacing import PaceReport, Pacing
from ..api.wire import TaskView
from ..core.planning import Plan
from ..run.budget import LedgerSnapshot
from ..run.outcome import JobResult
from ..run.work import Work
from ..views.progress import Counters
from .results import JobOutcome, Progress, outcome_of

__all__ = ["CallbackEvents", "ProgressCallback"]

ProgressCallback = Callable[[Progress], None]


class CallbackEvents:
    """The run layer's ``Events``, told to a callback. A callback that raises is not called
    again, and its exception is raised once the run has ended (``raise_callback_error``):
    the run itself is never left half-recorded by a bug in a progress bar."""

    def __init__(self, plan: Plan, callback: ProgressCallback | None, total: int) -> None:
        self.plan = plan
        self.callback = callback
        self.c = Counters(total)
        self.error: BaseException | None = None

    def _tell(self, event: str, job: str | None = None, outcome: JobOutcome | None = None, detail: str = "") -> None:
        if self.callback is None:
            return
        s = self.c.ledger()
        snapshot = Progress(event, job, self.c.finished, self.c.total, self.c.started - self.c.finished, self.c.failed,
                            self.c.images, s.settled, s.reserved, s.cap, outcome, detail)
        try:
            self.callback(snapshot)
        except Exception as exc:
            self.error, self.callback = exc, None

    def raise_callback_error(self) -> None:
        if self.error is not None:
            raise self.error

    def attach(self, ledger: Callable[[], LedgerSnapshot], pacing: Pacing | None = None) -> None:
        self.c.ledger, self.c.pacing = ledger, pacing

    def started(self, w: Work) -> None:
        self.c.started += 1
        self._tell("started", w.job_id)

    def submitting(self, w: Work, retry: int) -> None:
        pass

    def accepted(self, w: Work, task_id: str) -> None:
        self.c.accepted += 1
        self._tell("accepted", w.job_id, detail=task_id)

    def progress(self, w: Work, view: TaskView) -> None:
        if view.progress is not None:
            self.c.progress[w.key] = view.progress
            self._tell("progress", w.job_id, detail=f"{view.progress:g}")

    def throttled(self, w: Work, exc: ApiError, delay: float) -> None:
        pass

    def pacing(self, report: PaceReport) -> None:
        pass

    def unknown(self, w: Work, reason: str) -> None:
        pass

    def listing(self, waiting: int, until: float | None) -> None:
        pass

    def resubmit(self, w: Work) -> None:
        pass

    def finished(self, w: Work, result: JobResult) -> None:
        self.c.finish(w, result)
        outcome = outcome_of(w.job_id, w.key, w.labels, None, self.plan.output_dir, result)
        self._tell("finished", w.job_id, outcome)

    def stopping(self, reason: str, detail: str) -> None:
        self._tell("stopping", None, detail=detail or reason)
