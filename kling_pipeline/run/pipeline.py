"""Deciding a pipeline's downstream jobs: at the start of a run, for the upstream jobs already
done, and during it, for each upstream job as it completes.

Each downstream job made real (``chain.Chain.make``) is decided like any job (``work.decide``):
sent, followed, fetched again, or done already — and a done one's own downstream jobs are
decided in turn. A job that will not complete cuts its descendants short (``Chain.cut``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..core.jobs import Job
from ..store.state import ManifestState
from .chain import Chain
from .work import Decision

__all__ = ["Downstream", "StageTally", "stage_tally"]

Decide = Callable[..., Decision]  # work.decide with the run's options bound


class Downstream:
    def __init__(self, chain: Chain, state: ManifestState, decide: Decide) -> None:
        self.chain, self.state, self._decide = chain, state, decide

    def start(self, decision: Decision) -> None:
        """Add to ``decision`` (the root stages') the downstream jobs of every job already done."""
        made_before = set(self.chain.made)
        for s in list(decision.done):
            self.chain.note_state(s)
            self.merge(decision, self.after(s.key))
        for s in (*decision.failed, *decision.unknown):
            self.chain.cut_below(s.key)
        made = set(self.chain.made) - made_before
        # a downstream job of the manifest followed as one the recipe no longer has, now made real: once
        decision.work = [w for w in decision.work if w.job is not None or w.key not in made]

    @staticmethod
    def merge(into: Decision, more: Decision) -> None:
        into.work += more.work
        into.done += more.done
        into.failed += more.failed
        into.unknown += more.unknown
        into.deferred += more.deferred

    def after(self, key: str) -> Decision:
        """The decision for the downstream jobs of the completed job ``key`` (and, for those
        already done, for theirs)."""
        out = Decision()
        todo = [key]
        while todo:
            made, missing = self.chain.make(todo.pop())
            for sp, job, _why in missing:
                self.chain.skip(sp, job)
            by_stage: dict[str, list[Job]] = {}
            for m in made:
                by_stage.setdefault(m.stage, []).append(m.job)
            for stage, jobs in by_stage.items():
                d = self._decide(self.state, jobs=jobs, stage=stage, orphans=False)
                self.merge(out, Decision(work=d.work, failed=d.failed, unknown=d.unknown, deferred=d.deferred))
                for s in d.done:
                    self.chain.note_state(s)
                    out.done.append(s)
                    todo.append(s.key)
                for s in (*d.failed, *d.unknown):
                    self.chain.cut_below(s.key)
        return out


@dataclass(frozen=True, slots=True)
class StageTally:
    """Where one stage of a pipeline stands."""

    name: str
    planned: int  # jobs in the plan (a list read as files: at most)
    done: int  # completed
    failed: int  # failed, cancelled or rejected
    waiting: int  # not made yet: their upstream job has not completed
    left_cost: int  # what the jobs not done would cost, at most (microcents)
    planned_cost: int


def stage_tally(chain: Chain, state: ManifestState) -> list[StageTally]:
    """Each stage: its jobs done, failed, waiting for their input, and what finishing would cost."""
    real = chain.real_keys()
    out = []
    for sp in chain.plan.stages:
        done = failed = waiting = left = 0
        for job in sp.plan.jobs:
            key = job.key if sp.needs is None else real.get(job.key)
            s = state.jobs.get(key) if key is not None else None
            if key is None:
                waiting += 1
            elif s is not None and s.state == "completed":
                done += 1
                continue
            elif s is not None and s.state in ("failed", "cancelled", "rejected"):
                failed += 1
            left += job.cost
        out.append(StageTally(sp.name, len(sp.plan.jobs), done, failed, waiting, left, sp.plan.total_cost))
    return out
