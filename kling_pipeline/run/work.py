"""What a run has to do for each job, decided from the plan and the manifest.

A plan, the replayed manifest and the user's flags in; a list of ``Work`` items
(and the jobs left alone, with why) out. The only I/O: ``outputs_present`` looks
at the sizes of a completed job's files on disk (a missing file is fetched again).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from ..api.apierrors import is_provider_limit
from ..core.jobs import Job
from ..core.planning import Plan
from ..store.state import JobState, ManifestState

__all__ = ["Action", "Decision", "Work", "decide"]


class Action(Enum):
    SUBMIT = "submit"  # send a new request (first time, or an allowed retry)
    REATTACH = "reattach"  # a task id is known: follow it, never re-send
    RECONCILE = "reconcile"  # a submit whose answer was lost: find the task in the listing
    REDOWNLOAD = "redownload"  # completed, but an image is missing on disk: fetch it again by task id
    FROM_CACHE = "from_cache"  # paid and downloaded before (any output directory): served from the shared cache
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Work:
    """One unit of work for the scheduler."""

    action: Action
    key: str
    job_id: str
    output_name: str
    given_labels: Mapping[str, str] | None  # None: the job's own (made when asked, not for each of 100,000)
    cost: int  # microcents for a new submit
    units: int
    job: Job | None = None  # None for a job the recipe no longer has (recorded in the manifest only)
    state: JobState | None = None
    retry_unknown: bool = False
    stage: str = ""  # a pipeline's stage ("" for a one-stage recipe)

    @property
    def labels(self) -> Mapping[str, str]:
        """The job's combination as ``{axis: label}``."""
        if self.given_labels is not None:
            return self.given_labels
        return self.job.combination.labels if self.job is not None else {}


@dataclass(slots=True)
class Decision:
    work: list[Work] = field(default_factory=list)
    done: list[JobState] = field(default_factory=list)  # completed earlier, images present
    failed: list[JobState] = field(default_factory=list)  # failed earlier, not retried
    unknown: list[JobState] = field(default_factory=list)  # outcome unknown, not retried
    deferred: list[Work] = field(default_factory=list)  # left for another command (detach: waiting; collect: new)
    waiting: int = 0  # a pipeline's downstream jobs whose input does not exist yet
    waiting_cost: int = 0  # what they would cost, at most

    @property
    def nothing_to_do(self) -> bool:
        return not self.work

    def count(self, action: Action) -> int:
        return sum(1 for w in self.work if w.action is action)


def outputs_present(state: JobState, out_dir: Path) -> bool:
    done = state.done
    if done is None or done.download_pending or not done.outputs:
        return False
    for item in done.outputs:
        path = out_dir / item.path
        try:
            if path.stat().st_size != item.size:
                return False
        except OSError:
            return False
    return True


def _from_state(action: Action, state: JobState, retry_unknown: bool = False) -> Work:
    intent = state.intent
    if intent is None:
        return Work(action, state.key, state.job_id or state.key[:10], state.key[:10], {}, 0, 1, None, state,
                    retry_unknown)
    return Work(action, state.key, state.job_id or intent.job, intent.output, dict(intent.combination),
                intent.reserved_microcents, intent.units, None, state, retry_unknown, intent.stage or "")


PROVIDER_RETRIES = 5  # sends of a job after its first, while its task fails on the provider's own limit


def retryable_failure(state: JobState, provider_retries: int = PROVIDER_RETRIES) -> bool:
    """A task that failed on the provider's concurrency limit (nothing billed) is sent again,
    by this run or the next, until it has been sent ``1 + provider_retries`` times in all."""
    return state.state == "failed" and is_provider_limit(state.error) and state.attempts <= provider_retries


def decide(plan: Plan, manifest: ManifestState, *, retry_failed: bool = False, retry_unknown: bool = False,
           reconcile: bool = True, jobs: Iterable[Job] | None = None, mode: str = "run",
           provider_retries: int = PROVIDER_RETRIES, cached: Collection[str] = (), stage: str = "",
           orphans: bool = True) -> Decision:
    """Decide each job's action. Jobs in the manifest but not in the plan (the recipe
    changed) are still followed when a task of theirs may be running or unfinished.
    A job whose task was cancelled (Ctrl-C with ``--cancel-inflight``) is sent again, and
    so is one that failed on the provider's limit within its retries (see ``retryable_failure``).
    A job to send whose key is in ``cached`` (the shared result cache) is served from it instead.

    ``mode`` "detach" keeps only new submits (the rest waits for ``collect``);
    "collect" keeps everything but new submits (those wait for the next ``run``).
    ``stage`` names the pipeline stage of ``jobs``; ``orphans`` False leaves out the jobs of the
    manifest that are not among them (a pipeline decides its downstream jobs as they appear).
    """
    out = Decision()
    keys = set()
    for job in plan.jobs if jobs is None else jobs:
        keys.add(job.key)
        state = manifest.jobs.get(job.key)
        fresh = Work(Action.SUBMIT, job.key, job.id, job.output_name, None, job.cost, job.units,
                     job, state, False, stage)
        if state is None or state.state in ("new", "not_created", "rejected", "cancelled"):
            out.work.append(_with(fresh, Action.FROM_CACHE) if job.key in cached else fresh)
        elif state.state == "completed":
            if outputs_present(state, plan.output_dir):
                out.done.append(state)
            else:
                out.work.append(_with(fresh, Action.REDOWNLOAD))
        elif state.state == "failed":
            if retry_failed or retryable_failure(state, provider_retries):
                out.work.append(fresh)
            else:
                out.failed.append(state)
        elif state.in_flight:
            out.work.append(_with(fresh, Action.REATTACH))
        elif state.unresolved:
            if reconcile:
                out.work.append(_with(fresh, Action.RECONCILE, retry_unknown))
            elif retry_unknown:
                out.work.append(fresh)
            else:
                out.unknown.append(state)
    for state in manifest.jobs.values() if orphans else ():
        if state.key in keys:
            continue
        if state.in_flight:
            out.work.append(_from_state(Action.REATTACH, state))
        elif state.unresolved and reconcile:
            out.work.append(_from_state(Action.RECONCILE, state))
        elif state.unresolved:
            out.unknown.append(state)  # its reservation still counts: say so
    # Work that needs no new money goes first: it settles reservations the budget is waiting on.
    if mode in ("detach", "collect"):
        submitting = mode == "detach"
        out.deferred = [w for w in out.work if (w.action is Action.SUBMIT) is not submitting]
        out.work = [w for w in out.work if (w.action is Action.SUBMIT) is submitting]
    order = {Action.REATTACH: 0, Action.REDOWNLOAD: 1, Action.FROM_CACHE: 1, Action.RECONCILE: 2, Action.SUBMIT: 3}
    out.work.sort(key=lambda w: order[w.action])
    return out


def _with(work: Work, action: Action, retry_unknown: bool = False) -> Work:
    return Work(action, work.key, work.job_id, work.output_name, work.given_labels, work.cost, work.units, work.job,
                work.state, retry_unknown, work.stage)
