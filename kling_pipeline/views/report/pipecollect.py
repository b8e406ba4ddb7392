"""A pipeline's manifest (and plan) to job lines on disk, each with its stage and its place in the
chains, and a summary per stage. Two passes over the jobs, one bucket or one line at a time:

1. each manifest job is added to the ``Lineage`` (numbers only) and written to a work file as
   the report shows it from the manifest alone;
2. once every upstream link is known, each job is read back, put on its planned job (with a
   plan), given its chain key, tallied for its stage, and written as a *member* of the chains
   (or listed apart); the planned jobs no manifest job stands for follow.

Thumbnails are made later, as the members are sorted into pages (``with_thumbnails``).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from ...core.planning import Plan
from .collect import Tally, inside, manifest_entry, plan_entry, summary
from .lineage import Lineage, StageInfo
from .model import JobEntry, ReportSummary, Totals, entry_line, parse_entry
from .planmatch import PlanMatcher
from .source import ManifestSource
from .thumbs import Thumbnails

__all__ = ["BATCH", "PipelineData", "StageData", "collect_pipeline", "parse_upstream", "upstream_field",
           "with_thumbnails"]

BATCH = 256  # jobs whose thumbnails are made together
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StageData:
    number: int
    info: StageInfo
    summary: ReportSummary  # the stage as a sweep of its own: its axes and totals (its grid's)


@dataclass(frozen=True, slots=True)
class PipelineData:
    summary: ReportSummary  # the whole pipeline (no axes: each stage has its own)
    stages: tuple[StageData, ...]
    members: Path  # lines: member, stage, chain key, upstream (``upstream_field``), ``entry_line``; in no order
    others: Path  # lines: stage (-1: none), ``entry_line``; jobs not in the chains (not in the plan)
    lineage: Lineage


def collect_pipeline(out_dir: Path, plan: Plan | None, source: ManifestSource, workdir: Path) -> PipelineData:
    lineage = Lineage(PlanMatcher(plan) if plan is not None else None)
    nodes = workdir / "nodes.tsv"
    with nodes.open("w", encoding="ascii") as fh:
        for _, jobs in source.buckets():
            for mj in jobs:
                lineage.add(mj)
                entry = manifest_entry(mj, out_dir, mj.line)
                up = upstream_field(mj.parent_job, mj.parent_file, out_dir)
                fh.write(f"{int(mj.submitted)}\t{mj.billed}\t{mj.outstanding}\t{up}\t{entry_line(entry)}\n")
    lineage.resolve()
    pass2 = _Placing(out_dir, plan, lineage)
    members, others = workdir / "members.tsv", workdir / "others.tsv"
    with members.open("w", encoding="ascii") as mfh, others.open("w", encoding="ascii") as ofh:
        for (member, stage, up), entry in pass2.entries(nodes):
            if member < 0:
                ofh.write(f"{stage}\t{entry_line(entry)}\n")
                continue
            pass2.count(stage, entry)
            mfh.write(f"{member}\t{stage}\t{lineage.chain_key(member)}\t{up}\t{entry_line(entry)}\n")
    return PipelineData(pass2.summary(source), pass2.stage_data(), members, others, lineage)


class _Placing:
    def __init__(self, out_dir: Path, plan: Plan | None, lineage: Lineage) -> None:
        self.out_dir = out_dir
        self.plan = plan
        self.lineage = lineage
        self.overall = Tally()
        self.tallies = [Tally() for _ in lineage.stages]

    def entries(self, nodes: Path) -> Iterator[tuple[tuple[int, int, str], JobEntry]]:
        """((member, stage, upstream), job) of every node (member -1: listed apart), then of every
        planned job no node stands for."""
        lineage, plan = self.lineage, self.plan
        with nodes.open(encoding="ascii") as fh:
            for n, line in enumerate(fh):
                submitted, billed, outstanding, up, text = line.rstrip("\n").split("\t", 4)
                entry = parse_entry(text)
                self.overall.money(int(billed), int(outstanding))
                if not lineage.in_chains(n):
                    self.overall.others += 1
                    moved = len(plan.jobs) + entry.order if plan is not None else entry.order
                    yield (-1, lineage.stage[n], up), replace(entry, order=moved)
                    continue
                stage = lineage.member_stage(n)
                self.tallies[stage].money(int(billed), int(outstanding))
                if plan is not None:
                    entry = self._placed(entry, lineage.slot[n], submitted == "1")
                yield (n, stage, up), entry
        if plan is not None and lineage.matcher is not None:
            none = upstream_field(None, None, self.out_dir)
            for i, held in enumerate(lineage.plan_node):
                if held < 0:
                    yield ((lineage.nodes + i, lineage.matcher.stage_of[i], none),
                           plan_entry(plan.jobs[i], i, None, plan, self.out_dir))

    def _placed(self, entry: JobEntry, index: int, submitted: bool) -> JobEntry:
        """A node's job as its planned job: the plan's id, labels and cost, in plan order."""
        assert self.plan is not None
        job = self.plan.jobs[index]
        if not submitted:  # known to the manifest, never sent: as the plan has it
            return replace(plan_entry(job, index, None, self.plan, self.out_dir), status=entry.status,
                           state=entry.state, billed=entry.billed, error=entry.error, task_id=entry.task_id,
                           attempts=entry.attempts)
        return replace(entry, job_id=job.id, labels=tuple(job.combination.labels.items()),
                       repeat_index=job.repeat_index, planned=job.cost, order=index)

    def count(self, stage: int, entry: JobEntry) -> None:
        self.overall.count(entry)
        self.tallies[stage].count(entry)

    def summary(self, source: ManifestSource) -> ReportSummary:
        whole = summary(self.out_dir, self.plan, source, self.overall)
        return replace(whole, axes=(), app=None)

    def stage_data(self) -> tuple[StageData, ...]:
        out = []
        whole_plan = self.plan
        for number, (info, tally) in enumerate(zip(self.lineage.stages, self.tallies, strict=True)):
            sp = whole_plan.stages[number] if whole_plan is not None else None
            written = {a.name: tuple(v.label for v in a.values) for a in sp.plan.recipe.matrix.axes} if sp else {}
            totals = Totals(jobs=tally.jobs, by_status=tuple(tally.counts.items()), images=tally.images,
                            not_images=tally.not_images, images_missing=tally.missing,
                            planned=sp.plan.total_cost if sp is not None else tally.planned,
                            billed=tally.billed, reserved=tally.reserved)
            data = ReportSummary(title=info.name, out_dir=self.out_dir, recipe=None, app=info.app,
                                 from_plan=sp is not None, axes=tally.axes(written), totals=totals,
                                 per_cell=tally.per_cell, repeats=tally.repeats)
            out.append(StageData(number, info, data))
        return tuple(out)


def upstream_field(job: str | None, file: str | None, out_dir: Path) -> str:
    """A job's upstream as its intent names it: the upstream job's id and the file it read (only a
    path inside the output directory, of a file there), as one ASCII JSON field (``parse_upstream``)."""
    if file is not None and not (inside(file) and os.path.isfile(os.path.join(out_dir, file))):
        file = None
    return json.dumps([job, file], separators=(",", ":"))


def parse_upstream(text: str) -> tuple[str | None, str | None]:
    job, file = json.loads(text)
    return (job if isinstance(job, str) else None), (file if isinstance(file, str) else None)


def with_thumbnails(items: Iterable[tuple[T, JobEntry]], thumbs: Thumbnails) -> Iterator[tuple[T, JobEntry]]:
    """The same items, each completed job's images with their thumbnails, made ``BATCH`` jobs at a
    time (so that the worker threads have several images to share)."""
    it = iter(items)
    while batch := list(itertools.islice(it, BATCH)):
        images = [img for _, job in batch if job.status == "completed" for img in job.images]
        done = iter(thumbs.ensure(images))
        for tag, job in batch:
            if job.status == "completed" and job.images:
                yield tag, job.with_images(tuple(next(done) for _ in job.images))
            else:
                yield tag, job
