"""Planning a pipeline: each stage planned as a recipe, a downstream stage over its upstream's jobs.

A downstream stage is planned with one more matrix axis, named after the stage it needs,
whose values are the upstream's jobs (those ``where`` keeps). Each value is a mapping a
template reads as ``draft.image``, ``draft.input.prompt``, ``draft.job_id`` or
``draft.subject``. An output does not exist before the run, so ``draft.image`` is a
*token*: a URL on the reserved ``.invalid`` domain naming the upstream stage, job key,
field and index. It passes the schema checks as any file URL does, and it makes the
stage's plan-time key stable (it holds the upstream's key). The run layer swaps each
token for the real output (``run.chain``): the service's URL (or the local file, once
uploaded) in the request, the file's ``sha256:`` in the job's content key — so a
downstream job is paid again only when its upstream *file* changed.

A list output (``images``) read as a file fans out: one downstream job per file, counted
at plan time as the upstream job's billed units (an upper bound: the app may return fewer).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jinja2.nodes

from .appstore import SchemaStore
from .errors import Diagnostic, Position, RecipeError, UsageError
from .jobs import Job
from .localfiles import FileChecker, check_path
from .matrix import Axis, AxisValue
from .outputs import OutputField, OutputSpec
from .planning import MAX_SHOWN_ERRORS, Plan, StagePlan, find_app, plan
from .recipe import Recipe
from .render import TemplateSet, field_name
from .sandbox import TemplateProblem, make_environment, parse
from .stages import RESERVED, Pipeline, Stage, lineage_axes
from .sweep import DEFAULT_MAX_JOBS

__all__ = ["TOKEN_PREFIX", "Ref", "find_refs", "joined", "parse_token", "plan_pipeline", "root_keys", "token"]

TOKEN_PREFIX = "https://upstream.invalid/"  # noqa: S105 - a reserved domain, not a secret
_TOKEN = re.compile(r"https://upstream\.invalid/([A-Za-z_][A-Za-z0-9_]*)/([0-9a-f]{64})/([^/\s\"']+)/([0-9]+)")
_DICT_ATTRS = frozenset(dir(dict))  # draft.items would be the dict's method, not an axis


@dataclass(frozen=True, slots=True)
class Ref:
    """An upstream output a downstream request reads: the ``index``-th file (or the value) of ``field``
    of the job ``key`` of ``stage``."""

    stage: str
    key: str
    field: str
    index: int


def token(ref: Ref) -> str:
    return f"{TOKEN_PREFIX}{ref.stage}/{ref.key}/{ref.field}/{ref.index}"


def parse_token(text: str) -> Ref | None:
    """The reference a whole string is, else None."""
    m = _TOKEN.fullmatch(text)
    return Ref(m[1], m[2], m[3], int(m[4])) if m else None


def find_refs(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], Ref, bool]]:
    """Every reference in a rendered request: ``(path, ref, whole)``, ``whole`` when the string is the token."""
    if isinstance(value, str):
        if TOKEN_PREFIX in value:
            whole = parse_token(value)
            if whole is not None:
                yield path, whole, True
                return
            for m in _TOKEN.finditer(value):
                yield path, Ref(m[1], m[2], m[3], int(m[4])), False
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from find_refs(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from find_refs(v, (*path, i))


@dataclass(slots=True)
class _Reads:
    """What a stage's templates read from the stage it needs."""

    fields: set[str] = dataclasses.field(default_factory=set)  # output fields
    fanout: str | None = None  # the list output read one file per job
    input: bool = False  # draft.input


def _refs_in(leaf_source: str, name: str) -> list[str | None] | None:
    """The attributes a template reads of ``name`` (None for a bare ``name``); None when
    the template does not parse (the plan reports that)."""
    try:
        ast = parse(make_environment(), leaf_source)
    except (jinja2.TemplateSyntaxError, TemplateProblem):
        return None
    covered: set[int] = set()
    out: list[str | None] = []
    for node in ast.find_all(jinja2.nodes.Getattr):
        if isinstance(node.node, jinja2.nodes.Name) and node.node.name == name:
            covered.add(id(node.node))
            out.append(node.attr)
    for item in ast.find_all(jinja2.nodes.Getitem):
        if isinstance(item.node, jinja2.nodes.Name) and item.node.name == name:
            covered.add(id(item.node))
            arg = item.arg
            out.append(arg.value if isinstance(arg, jinja2.nodes.Const) and isinstance(arg.value, str) else "")
    for ref in ast.find_all(jinja2.nodes.Name):
        if ref.name == name and id(ref) not in covered:
            out.append(None)
    return out


def _check_reads(stage: Stage, recipe: Recipe, up: StagePlan, lineage: Sequence[str],
                 problems: list[Diagnostic], schemas: SchemaStore | None) -> _Reads:
    """Check what ``stage``'s templates read of its upstream, at each template's position."""
    assert stage.needs is not None
    needs = stage.needs
    try:
        down_app = find_app(recipe, schemas)
    except RecipeError:  # reported by the stage's plan
        return _Reads()
    inputs = {f.name: f for f in OutputSpec.from_schema(down_app.input_schema).file_fields}
    outputs = {f.name: f for f in up.outputs.fields}
    reserved = set(RESERVED) | set(outputs) | _DICT_ATTRS
    axes = [a for a in lineage if a not in reserved]
    reads = _Reads()
    templates = TemplateSet(make_environment(), recipe.input)
    for leaf in templates.leaves.values():
        if needs not in leaf.names or not isinstance(leaf.source, str):
            continue
        found = _refs_in(leaf.source, needs)
        where = field_name(leaf.path)
        for attr in found or ():
            if attr is None:
                problems.append(Diagnostic(leaf.pos, f"{where}: {needs!r} is a stage: read one of its outputs "
                                                     f"({', '.join(f'{needs}.{o}' for o in outputs) or 'none'}), "
                                                     f"its input ({needs}.input.<field>) or an axis"))
                continue
            if attr in ("input", "job_id", "key", "stage", "axes") or attr in axes:
                reads.input = reads.input or attr == "input"
                continue
            out = outputs.get(attr)
            if out is None:
                known = [*outputs, "input", "job_id", *axes]
                hint = difflib.get_close_matches(attr, known, n=1)
                more = f"; did you mean {needs}.{hint[0]}?" if hint else ""
                problems.append(Diagnostic(leaf.pos, f"{where}: {needs} ({up.plan.app.name}) has no output or axis "
                                                     f"{attr!r}{more} (outputs: {', '.join(outputs) or 'none'}; "
                                                     f"axes: {', '.join(axes) or 'none'})"))
                continue
            reads.fields.add(attr)
            if out.kind is None:  # a value (text, number): read anywhere, as text
                continue
            _check_file_read(leaf.kind, leaf.parts, leaf.path, leaf.pos, needs, out, inputs, down_app.name,
                             problems)
            if out.many:
                if reads.fanout not in (None, attr):
                    problems.append(Diagnostic(leaf.pos, f"{where}: a stage fans out over one list output; "
                                                         f"it reads {needs}.{reads.fanout} already"))
                reads.fanout = attr
    return reads


def _check_file_read(kind: str, parts: Any, path: tuple[str | int, ...], pos: Position, needs: str,
                     out: OutputField, inputs: Mapping[str, OutputField], app: str,
                     problems: list[Diagnostic]) -> None:
    where = field_name(path)
    target = inputs.get(str(path[0])) if path else None
    fits = (target is not None and (len(path) == 1 or (len(path) == 2 and target.many)))
    if kind != "name" or parts != ((needs, out.name),) or not fits:
        names = ", ".join(inputs) or "none"
        problems.append(Diagnostic(pos, f"{where}: {needs}.{out.name} is a file: it can only be the whole value of "
                                        f"a file field of {app} ({names}), as '{{{{ {needs}.{out.name} }}}}'"))
        return
    assert target is not None
    if out.kind != "file" and target.kind not in ("file", out.kind):
        problems.append(Diagnostic(pos, f"{where} takes {_a(target.kind)}; {needs}.{out.name} is "
                                        f"{_a(out.kind)}"))


def _a(kind: str | None) -> str:
    return {"image": "an image", "video": "a video", "audio": "audio", "file": "a file"}.get(kind or "", "a value")


def _lineage(plans: Mapping[str, StagePlan], sp: StagePlan, job: Job) -> dict[str, str]:
    """The labels of ``job``'s combination and of every upstream job it comes from."""
    labels: dict[str, str] = {}
    while True:
        for k, p in zip(job.combination.keys, job.combination.picks, strict=True):
            if k != sp.needs:
                labels.setdefault(k, p.label)
        if sp.needs is None:
            return labels
        parent = job.combination.pick(sp.needs)
        assert parent is not None
        sp = plans[sp.needs]
        job = sp.job(parent.value["key"])


def _upstream_axis(stage: Stage, up: StagePlan, plans: Mapping[str, StagePlan], reads: _Reads,
                   problems: list[Diagnostic]) -> Axis:
    """The implicit axis named after the stage ``stage`` needs: one value per upstream job kept
    (per file, for a list read as files)."""
    assert stage.needs is not None
    needs, pos = stage.needs, stage.needs_pos or stage.pos
    taken: dict[str, set[str]] = {w.axis: set() for w in stage.where}
    values: list[AxisValue] = []
    outputs = {f.name: f for f in up.outputs.fields}
    for job in up.plan.jobs:
        lineage = _lineage(plans, up, job)
        for w in stage.where:
            if w.axis in lineage:
                taken[w.axis].add(lineage[w.axis])
        if not all(lineage.get(w.axis) in w.labels for w in stage.where):
            continue
        axes = dict(_values(plans, up, job))
        base: dict[str, Any] = {k: v for k, v in axes.items() if k not in RESERVED and k not in outputs
                                and k not in _DICT_ATTRS}
        base.update(name=job.id, job_id=job.id, key=job.key, stage=needs, axes=axes)
        if reads.input:
            base["input"] = up.plan.render(job).request
        count = max(1, job.units) if reads.fanout else 1
        for i in range(count):
            value = dict(base)
            for f in reads.fields:
                value[f] = token(Ref(needs, job.key, f, i if f == reads.fanout else 0))
            label = f"{job.id}.{i}" if reads.fanout else job.id
            value["name"] = label
            values.append(AxisValue(value, pos, label, label))
    for w in stage.where:
        for label, at in sorted(w.value_pos.items()):
            if label not in taken[w.axis]:
                known = ", ".join(sorted(taken[w.axis])) or "none"
                problems.append(Diagnostic(at, f"where: no job of {needs!r} has {w.axis}={label} (values: {known})"))
    if not values and not problems:
        problems.append(Diagnostic(stage.needs_pos or stage.pos, f"stage {stage.name!r} takes no job of {needs!r}"))
    return Axis(needs, tuple(values), pos)


def _values(plans: Mapping[str, StagePlan], sp: StagePlan, job: Job) -> Iterator[tuple[str, Any]]:
    """``job``'s combination values and its upstream jobs', nearest first (a name seen once)."""
    seen: set[str] = set()
    while True:
        for k, p in zip(job.combination.keys, job.combination.picks, strict=True):
            if k != sp.needs and k not in seen:
                seen.add(k)
                yield k, p.value
        if sp.needs is None:
            return
        parent = job.combination.pick(sp.needs)
        assert parent is not None
        sp = plans[sp.needs]
        job = sp.job(parent.value["key"])


def _stage_recipe(stage: Stage, axis: Axis | None) -> Recipe:
    recipe = stage.recipe
    out = dataclasses.replace(recipe.output, filename=f"{stage.name}/{recipe.output.filename}")
    if axis is None:
        return dataclasses.replace(recipe, output=out)
    matrix = dataclasses.replace(recipe.matrix, axes=(axis, *recipe.matrix.axes))
    return dataclasses.replace(recipe, output=out, matrix=matrix, declared=recipe.declared | {axis.name})


def _stage_only(recipe: Recipe, axis: Axis | None, only: Mapping[str, set[str]]) -> dict[str, set[str]]:
    own = set(recipe.matrix.axis_names) | {k for e in recipe.matrix.include for k in e.values}
    if axis is not None:
        own.add(axis.name)
    return {k: v for k, v in only.items() if k in own}


def _foreign_tokens(sp: StagePlan, needs: str, problems: list[Diagnostic]) -> None:
    """A stage reads only the stage it needs: a file of a stage further up (``refine.input.image``)
    would reach the request as a token."""
    if not sp.plan.jobs:
        return
    request = sp.plan.render(sp.plan.jobs[0]).request
    for path, ref, _ in find_refs(request):
        if ref.stage != needs:
            pos = sp.plan.templates.positions.get(path) or sp.plan.recipe.input_pos
            problems.append(Diagnostic(pos, f"{field_name(path)}: reads an output of {ref.stage!r} through "
                                            f"{needs!r}; a stage reads only the outputs of the stage it needs"))


def plan_pipeline(pipeline: Pipeline, *, only: Mapping[str, set[str]] | None = None,
                  budget_usd: int | None = None, out_dir: Any = None, check_file: FileChecker = check_path,
                  max_jobs: int = DEFAULT_MAX_JOBS, schemas: SchemaStore | None = None,
                  max_job_usd: int | None = None) -> Plan:
    """Plan every stage (upstream first) and join them into one ``Plan``: all the jobs, priced
    together, under one budget; ``Plan.stages`` has each stage's own plan."""
    only = only or {}
    known: set[str] = set()
    for stage in pipeline.stages:
        m = stage.recipe.matrix
        known |= set(m.axis_names) | {k for e in m.include for k in e.values} | {stage.name}
    for name in only:
        if name not in known:
            raise UsageError(f"--only {name}=...: no stage has a matrix key {name!r} "
                             f"(keys: {', '.join(sorted(known)) or 'none'})")
    plans: dict[str, StagePlan] = {}
    problems: list[Diagnostic] = []
    total = 0
    for stage in pipeline.stages:
        axis: Axis | None = None
        reads = _Reads()
        if stage.needs is not None:
            up = plans.get(stage.needs)
            if up is None:  # the stage it needs could not be planned: its problems are reported
                continue
            found: list[Diagnostic] = []
            reads = _check_reads(stage, stage.recipe, up, lineage_axes(pipeline, stage.needs), found, schemas)
            if not found:
                axis = _upstream_axis(stage, up, plans, reads, found)
            if found:
                problems += found
                continue
        recipe = _stage_recipe(stage, axis)
        try:
            p = plan(recipe, only=_stage_only(recipe, axis, only), budget_usd=budget_usd, out_dir=out_dir,
                     check_file=check_file, max_jobs=max_jobs, schemas=schemas, max_job_usd=max_job_usd)
        except RecipeError as exc:
            problems += exc.diagnostics
            continue
        sp = StagePlan(stage.name, p, stage.needs, OutputSpec.from_schema(p.app.output_schema),
                       reads.fanout if stage.needs is not None else None)
        if stage.needs is not None:
            found = []
            _foreign_tokens(sp, stage.needs, found)
            if found:
                problems += found
                continue
        total += len(p.jobs)
        if total > max_jobs:
            raise RecipeError([Diagnostic(stage.pos, f"the pipeline makes more than {max_jobs:,} jobs in all "
                                                     f"(up to stage {stage.name!r}); narrow it, or raise the limit "
                                                     "with --max-jobs N")])
        plans[stage.name] = sp
    if problems:
        raise RecipeError(problems[:MAX_SHOWN_ERRORS], total=len(problems))
    return joined(pipeline, [plans[s.name] for s in pipeline.stages])


def root_keys(plan: Plan) -> dict[str, str]:
    """Each job of a pipeline's plan (by plan-time key) -> the key of the root job its chain starts from."""
    roots: dict[str, str] = {}
    for sp in plan.stages:
        for job in sp.plan.jobs:
            parent = job.combination.pick(sp.needs) if sp.needs is not None else None
            roots[job.key] = job.key if parent is None else roots[parent.value["key"]]
    return roots


def joined(pipeline: Pipeline, stages: list[StagePlan]) -> Plan:
    """One plan of every stage's jobs, priced together (``Plan.stages`` keeps each stage's own)."""
    first = stages[0].plan
    jobs = tuple(j for sp in stages for j in sp.plan.jobs)
    return dataclasses.replace(
        first, jobs=jobs, warnings=tuple(w for sp in stages for w in sp.plan.warnings),
        total_cost=sum(sp.plan.total_cost for sp in stages), total_units=sum(sp.plan.total_units for sp in stages),
        images_returned=sum(sp.plan.images_returned for sp in stages),
        collapsed=sum(sp.plan.collapsed for sp in stages), filtered_out=sum(sp.plan.filtered_out for sp in stages),
        removed_by_filter=sum(sp.plan.removed_by_filter for sp in stages), stages=tuple(stages),
        unbounded=sum(sp.plan.unbounded for sp in stages),
        pipeline=pipeline,
    )
