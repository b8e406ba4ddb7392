"""A pipeline in the run: downstream jobs made real as their upstream outputs appear.

The plan keys a downstream job with *tokens* for the upstream files it reads (see
``core.chain``). When an upstream job has completed — before this run, or during it —
each of its downstream jobs is *materialized*: its content key computed with the
upstream file's ``sha256:`` in place of the token (so a changed draft re-runs only its
own descendants, and an unchanged one is never paid again), and its request made ready
to send with the service's URL of that file (no download and re-upload round trip) —
or, when that URL may have expired (a completion older than ``URL_FRESH``, or a result
served from the cache), the local file, uploaded once per content hash.

``Chain`` keeps the map from real keys to plan-time keys, what each upstream job
produced, and which downstream jobs could not start (and what they would have cost).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.chain import Ref, find_refs, token
from ..core.jobs import Job, content_key, make_job
from ..core.localfiles import LocalFile
from ..core.outputs import OutputSpec
from ..core.planning import Plan, RenderedJob, StagePlan
from ..core.schemas import Pricing
from ..store.records import DoneRecord, OutputEntry
from ..store.state import JobState

__all__ = ["URL_FRESH", "Chain", "Made", "Produced", "StageRun"]

URL_FRESH = 1800.0  # seconds after a completion its output URLs are passed on as they are


@dataclass(frozen=True, slots=True)
class StageRun:
    """What the run needs to know of a stage's app."""

    name: str
    app_ref: str
    pricing: Pricing
    outputs: OutputSpec


@dataclass(frozen=True, slots=True)
class Produced:
    """What a completed upstream job produced, as its downstream jobs read it."""

    key: str  # its real key
    job: str
    stage: str
    task: str | None
    files: Mapping[tuple[str, int], OutputEntry]  # (field, index) -> the saved file
    values: Mapping[str, Any]
    fresh_until: float  # wall time until which the service's URLs are used as they are
    chain: tuple[Mapping[str, Any], ...]  # provenance: every job up the chain, nearest last


@dataclass(frozen=True, slots=True)
class Made:
    """A downstream job made real: its job (real key), its stage, and the upstream it reads."""

    stage: str
    job: Job
    plan_key: str
    request: Mapping[str, Any]  # rendered with tokens
    files: Mapping[str, LocalFile]  # other local files of the request
    upstream: Produced


def _produced(stage: str, record: DoneRecord, outputs: OutputSpec, ttl: float,
              upstream: Produced | None) -> Produced:
    by_uri = {o.uri: o for o in record.outputs if o.uri}
    files: dict[tuple[str, int], OutputEntry] = {}
    for i, f in enumerate(outputs.files(record.raw_output)):
        # by the URI it was fetched from; a result served from the cache has its files in the same order
        entry = by_uri.get(f.uri) or (record.outputs[i] if not by_uri and i < len(record.outputs) else None)
        if entry is not None:
            files[(f.field.name, f.index)] = entry
    fresh = 0.0 if record.cached or record.redownload else record.at + ttl
    link = {"stage": stage, "job": record.job, "key": record.key, "task": record.task,
            "files": {f"{k[0]}[{k[1]}]" if k[1] else k[0]: e.sha256 for k, e in files.items()}}
    chain = (*(upstream.chain if upstream else ()), link)
    return Produced(record.key, record.job, stage, record.task, files, outputs.values(record.raw_output), fresh,
                    chain)


@dataclass(slots=True)
class Chain:
    """The run's view of a pipeline plan."""

    plan: Plan
    stage_runs: Mapping[str, StageRun]
    stages: dict[str, StagePlan] = field(default_factory=dict)
    children: dict[str, list[tuple[StagePlan, Job]]] = field(default_factory=dict)  # plan key -> its downstream
    plan_key: dict[str, str] = field(default_factory=dict)  # real key -> plan-time key
    stage_of: dict[str, str] = field(default_factory=dict)  # real key -> stage
    produced: dict[str, Produced] = field(default_factory=dict)  # plan key -> what it produced
    made: dict[str, Made] = field(default_factory=dict)  # real key -> the downstream job made from it
    twins: dict[str, str] = field(default_factory=dict)  # plan key -> the real key of an identical job made
    cut: dict[str, list[int]] = field(default_factory=dict)  # stage -> [jobs, cost] that could not start
    skipped: dict[str, int] = field(default_factory=dict)  # stage -> jobs of upstream files never returned
    url_ttl: float = URL_FRESH

    def __post_init__(self) -> None:
        for sp in self.plan.stages:
            self.stages[sp.name] = sp
            if sp.needs is None:
                for job in sp.plan.jobs:
                    self.plan_key[job.key] = job.key
                    self.stage_of[job.key] = sp.name
                continue
            for job in sp.plan.jobs:
                parent = job.combination.pick(sp.needs)
                assert parent is not None
                self.children.setdefault(parent.value["key"], []).append((sp, job))

    def roots(self) -> Iterator[tuple[StagePlan, list[Job]]]:
        for sp in self.plan.stages:
            if sp.needs is None:
                yield sp, list(sp.plan.jobs)

    def real_keys(self) -> dict[str, str]:
        """Plan-time key -> real key, for every downstream job made so far."""
        return {**self.twins, **{m.plan_key: key for key, m in self.made.items()}}

    def note(self, record: DoneRecord) -> None:
        """A completed job's record: what it produced, for the jobs downstream of it."""
        if record.status != "completed" or record.download_pending:
            return
        pk = self.plan_key.get(record.key)
        if pk is None or pk not in self.children:
            return
        stage = self.stage_of[record.key]
        made = self.made.get(record.key)
        self.produced[pk] = _produced(stage, record, self.stage_runs[stage].outputs, self.url_ttl,
                                      made.upstream if made else None)

    def note_state(self, state: JobState) -> None:
        if state.done is not None:
            self.note(state.done)

    def make(self, real_key: str) -> tuple[list[Made], list[tuple[StagePlan, Job, str]]]:
        """The downstream jobs of the completed job ``real_key``: those made real, and those that
        cannot be (the upstream returned fewer files than planned), each with why."""
        pk = self.plan_key.get(real_key)
        prod = self.produced.get(pk) if pk is not None else None
        if pk is None or prod is None:
            return [], []
        made: list[Made] = []
        missing: list[tuple[StagePlan, Job, str]] = []
        for sp, job in self.children.get(pk, ()):
            got = self._make(sp, job, prod)
            if isinstance(got, str):
                missing.append((sp, job, got))
            elif got.job.key in self.made:  # identical upstream files, identical request: one job, paid once
                if self.made[got.job.key].plan_key != job.key:
                    self.twins[job.key] = got.job.key
            else:
                self.made[got.job.key] = got
                self.plan_key[got.job.key] = job.key
                self.stage_of[got.job.key] = sp.name
                made.append(got)
        return made, missing

    def _make(self, sp: StagePlan, job: Job, prod: Produced) -> Made | str:
        rendered = sp.plan.render(job)
        keyed: dict[str, Any] = dict(rendered.request)
        for path, ref, whole in find_refs(rendered.request):
            got = _resolve(ref, whole, prod)
            if got is None:
                return f"{ref.stage} job {prod.job} returned no {ref.field}[{ref.index}]"
            _put(keyed, path, got if whole else _substitute(_get(keyed, path), ref, prod))
        for name, local in rendered.files.items():
            keyed[name] = f"sha256:{local.sha256}"
        key = content_key(self.stage_runs[sp.name].app_ref, keyed, job.repeat_index)
        real = make_job(job.id, key, job.combination, job.repeat_index, job.units, job.cost, job.output_name,
                        job.show_repeat)
        return Made(sp.name, real, job.key, rendered.request, rendered.files, prod)

    def descendants(self, plan_key: str) -> Iterator[tuple[StagePlan, Job]]:
        """Every plan-time job downstream of ``plan_key``, all the way down."""
        todo = [plan_key]
        while todo:
            for sp, job in self.children.get(todo.pop(), ()):
                yield sp, job
                todo.append(job.key)

    def skip(self, sp: StagePlan, job: Job) -> None:
        """A planned downstream job whose upstream file was not returned (a list shorter than billed)."""
        self.skipped[sp.name] = self.skipped.get(sp.name, 0) + 1
        self._cut(job.key)

    def cut_below(self, real_key: str) -> None:
        """``real_key`` will not complete in this run: its descendants cannot start."""
        pk = self.plan_key.get(real_key)
        if pk is not None:
            self._cut(pk)

    def _cut(self, pk: str) -> None:
        for sp, job in self.descendants(pk):
            row = self.cut.setdefault(sp.name, [0, 0])
            row[0] += 1
            row[1] += job.cost


def _resolve(ref: Ref, whole: bool, prod: Produced) -> Any:
    entry = prod.files.get((ref.field, ref.index))
    if entry is not None:
        return f"sha256:{entry.sha256}"
    if ref.field in prod.values and ref.index == 0:
        return prod.values[ref.field]
    return None


def _substitute(text: Any, ref: Ref, prod: Produced) -> str:
    value = prod.values.get(ref.field)
    return str(text).replace(token(ref), "" if value is None else str(value))


def _get(obj: Any, path: tuple[str | int, ...]) -> Any:
    for p in path:
        obj = obj[p]
    return obj


def _put(obj: Any, path: tuple[str | int, ...], value: Any) -> None:
    """Set ``value`` at ``path`` in a request, copying the lists and mappings on the way (the
    rendered request is shared)."""
    if not path:
        return
    *head, last = path
    node = obj
    for p in head:
        child = node[p]
        child = dict(child) if isinstance(child, Mapping) else list(child)
        node[p] = child
        node = child
    node[last] = value


async def prepare(made: Made, out_dir: Path, uploader: Any) -> tuple[RenderedJob, dict[str, Any]]:
    """The request of a downstream job as it is sent: each upstream file by the service's URL
    while it is fresh, else the local file uploaded (once per content hash); each upstream
    value in place. Returns the request (with the other local files still to upload) and the
    manifest's account of each upstream file."""
    request: dict[str, Any] = dict(made.request)
    files: dict[str, Any] = {}
    prod = made.upstream
    for path, ref, whole in find_refs(made.request):
        entry = prod.files.get((ref.field, ref.index))
        if entry is None:
            _put(request, path, _substitute(_get(request, path), ref, prod) if not whole
                 else prod.values.get(ref.field))
            continue
        if entry.uri and time.time() < prod.fresh_until:
            uri = entry.uri
        else:
            local = LocalFile(out_dir / entry.path, entry.sha256, entry.size, entry.content_type or
                              "application/octet-stream", None, None)
            uri = await uploader.upload(local, str(local.path))
        _put(request, path, uri)
        files[".".join(map(str, path))] = {"source": entry.path, "sha256": entry.sha256, "size": entry.size,
                                           "uri": uri, "upstream": {"stage": prod.stage, "job": prod.job,
                                                                    "key": prod.key, "task": prod.task}}
    return RenderedJob(request, made.files), files
