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
at plan time as the most a task may return (``chainsize.fan_out``: its billed units when the
app bills per item of the list, else the list's ``maxItems``; a read of a list nothing bounds
is refused). A stage's size is counted before its axis is built or its matrix expanded
(``chainsize.size_problem``), against the same ``--max-jobs`` limit for the whole chain.

A value output (``description``: text) is a token too, swapped for the text by the run, so a
template can only print it as it is, in a text field of the request (a filter or a comparison
would see the token). When it goes into the text a downstream app bills by its length (a
text-to-speech ``text``), the length is not known before the run: each such job is counted at
the most that field takes (its schema's ``maxLength``), else at ``--max-job-usd``.
Only ``input`` reads outputs: ``output.filename`` and ``matrix.filter`` are decided at plan
time, and read the upstream's axes, ``input`` and ``job_id``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jinja2.nodes

from .appstore import SchemaStore
from .chainsize import FanOut, fan_out, size_problem, unknown_fan_out
from .errors import Diagnostic, Position, RecipeError, UsageError
from .jobs import Job, make_job
from .jsonref import follow_ref
from .localfiles import FileChecker, check_path
from .matrix import Axis, AxisValue
from .money import format_usd
from .outputs import OutputField, OutputSpec
from .planning import MAX_SHOWN_ERRORS, Plan, StagePlan, find_app, plan
from .recipe import Recipe
from .render import TemplateSet, field_name
from .sandbox import TemplateProblem, make_environment, parse, parse_expression
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
    fan: FanOut | None = None  # the list output read one file per job, and how its files are counted
    input: bool = False  # draft.input
    # value outputs read into a request field: (draft.description, the field, where), for the price
    texts: list[tuple[str, str, Position]] = dataclasses.field(default_factory=list)


def _parsed(source: str, expression: bool = False) -> jinja2.nodes.Template | None:
    """A template's (or a filter expression's) tree; None when it does not parse (the plan reports that)."""
    try:
        return parse_expression(make_environment(), source) if expression else parse(make_environment(), source)
    except (jinja2.TemplateSyntaxError, TemplateProblem):
        return None


def _refs_in(ast: jinja2.nodes.Template, name: str) -> list[tuple[str | None, bool]]:
    """The attributes a template reads of ``name`` (None for a bare ``name``), each with whether
    it is printed as it is (``{{ name.attr }}`` on its own)."""
    printed = {id(n) for out in ast.find_all(jinja2.nodes.Output) for n in out.nodes}
    covered: set[int] = set()
    found: list[tuple[str | None, bool]] = []
    for node in ast.find_all(jinja2.nodes.Getattr):
        if isinstance(node.node, jinja2.nodes.Name) and node.node.name == name:
            covered.add(id(node.node))
            found.append((node.attr, id(node) in printed))
    for item in ast.find_all(jinja2.nodes.Getitem):
        if isinstance(item.node, jinja2.nodes.Name) and item.node.name == name:
            covered.add(id(item.node))
            arg = item.arg
            found.append((arg.value if isinstance(arg, jinja2.nodes.Const) and isinstance(arg.value, str) else "",
                          id(item) in printed))
    for ref in ast.find_all(jinja2.nodes.Name):
        if ref.name == name and id(ref) not in covered:
            found.append((None, False))
    return found


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
    reads.input = _check_decided_reads(recipe, needs, outputs, problems)
    templates = TemplateSet(make_environment(), recipe.input)
    for leaf in templates.leaves.values():
        if needs not in leaf.names or not isinstance(leaf.source, str):
            continue
        ast = _parsed(leaf.source)
        where = field_name(leaf.path)
        for attr, printed in _refs_in(ast, needs) if ast is not None else ():
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
            if out.kind is None:  # a value (text, number): printed as it is, into text
                _check_value_read(leaf.path, leaf.pos, printed, needs, out, inputs, down_app.name,
                                  down_app.input_schema, reads, problems)
                continue
            _check_file_read(leaf.kind, leaf.parts, leaf.path, leaf.pos, needs, out, inputs, down_app.name,
                             problems)
            if out.many:
                if reads.fan is not None and reads.fan.field != attr:
                    problems.append(Diagnostic(leaf.pos, f"{where}: a stage fans out over one list output; "
                                                         f"it reads {needs}.{reads.fan.field} already"))
                    continue
                fan = fan_out(up.plan.app, out)
                if fan is None:
                    problems.append(Diagnostic(leaf.pos, unknown_fan_out(where, needs, out, up.plan.app)))
                    continue
                reads.fan = fan
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
        takers = [n for n, f in inputs.items() if f.kind in ("file", out.kind)]
        hint = (f": read it into {', '.join(takers)}" if takers
                else f": {app} takes none (its file fields: {', '.join(inputs)})")
        problems.append(Diagnostic(pos, f"{where} takes {_a(target.kind)}; {needs}.{out.name} is "
                                        f"{_a(out.kind)}{hint}"))


def _check_value_read(path: tuple[str | int, ...], pos: Position, printed: bool, needs: str, out: OutputField,
                      inputs: Mapping[str, OutputField], app: str, schema: Mapping[str, Any], reads: _Reads,
                      problems: list[Diagnostic]) -> None:
    """A value output (text...) is a token until the run: it can only be printed as it is, into text."""
    where, ref = field_name(path), f"{needs}.{out.name}"
    target = inputs.get(str(path[0])) if path else None
    if target is not None:
        problems.append(Diagnostic(pos, f"{where} takes {_a(target.kind)}; {ref} is a value (text), not a file: "
                                        f"read a file output of {needs} there, or {ref} into a text field"))
    elif not printed:
        problems.append(Diagnostic(pos, f"{where}: {ref} is known only once {needs} has run: print it as it is, "
                                        f"'{{{{ {ref} }}}}' (a filter, a test or a comparison would see a "
                                        "placeholder, not its text)"))
    elif not _takes_text(schema, path):
        texts = [n for n in _properties(schema) if n not in inputs and _takes_text(schema, (n,))]
        problems.append(Diagnostic(pos, f"{where}: {ref} is read as text, which {where} does not take: read it "
                                        f"into a text field of {app} ({', '.join(texts) or 'none'})"))
    elif path:
        reads.texts.append((ref, str(path[0]), pos))


def _properties(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    props = schema.get("properties")
    return props if isinstance(props, Mapping) else {}


def _options(node: Any, root: Mapping[str, Any], depth: int = 0) -> list[Mapping[str, Any]]:
    """A schema's alternatives (``$ref`` followed, ``anyOf``/``oneOf`` spread, ``null`` left out)."""
    if not isinstance(node, Mapping) or depth > 20:
        return []
    if str(node.get("$ref", "")).startswith("#/"):
        return _options(follow_ref(node, root), root, depth + 1)
    branches = [b for key in ("anyOf", "oneOf") for b in node.get(key) or ()]
    if branches:
        return [o for b in branches for o in _options(b, root, depth + 1)]
    return [] if node.get("type") == "null" else [node]


def _takes_text(schema: Mapping[str, Any], path: tuple[str | int, ...]) -> bool:
    """Whether the request field at ``path`` takes free text: a string, not one of an ``enum``
    (a field the schema does not describe does: an open schema lets it through)."""
    nodes: list[Mapping[str, Any]] = [schema]
    for part in path:
        nxt: list[Mapping[str, Any]] = []
        for option in (o for n in nodes for o in _options(n, schema)):
            if isinstance(part, int) and option.get("type") == "array":
                nxt += _options(option.get("items", {}), schema) or [{}]
            elif isinstance(part, str) and part in _properties(option):
                nxt += _options(_properties(option)[part], schema) or [{}]
        if not nxt:
            return True
        nodes = nxt
    for option in nodes:
        kinds = option.get("type")
        if "enum" in option or "const" in option or option.get("format") == "file":
            continue
        if kinds is None or kinds == "string" or (isinstance(kinds, list) and "string" in kinds):
            return True
    return False


def _max_length(schema: Mapping[str, Any], name: str) -> int | None:
    """The longest text the request field ``name`` takes (its schema's ``maxLength``), if it says."""
    lengths = [o.get("maxLength") for o in _options(_properties(schema).get(name), schema)
               if o.get("type") in (None, "string")]
    if not lengths:
        return None
    most = 0
    for n in lengths:
        if not isinstance(n, int) or isinstance(n, bool):
            return None  # some text of any length is accepted
        most = max(most, n)
    return most


def _check_decided_reads(recipe: Recipe, needs: str, outputs: Mapping[str, OutputField],
                         problems: list[Diagnostic]) -> bool:
    """``output.filename`` and ``matrix.filter`` are worked out at plan time: they cannot read an
    output, which exists only once the upstream job has run. True when they read ``needs.input``."""
    decided: list[tuple[str, Position | None, jinja2.nodes.Template | None]] = []
    if recipe.output.filename_pos is not None and needs in recipe.output.filename:
        decided.append(("output.filename", recipe.output.filename_pos, _parsed(recipe.output.filename)))
    for cond in recipe.matrix.filter:
        if needs in cond.source:
            decided.append(("matrix.filter", cond.pos, _parsed(cond.source, expression=True)))
    reads_input = False
    for what, pos, ast in decided:
        for attr, _ in _refs_in(ast, needs) if ast is not None else ():
            reads_input = reads_input or attr == "input"
            if attr in outputs:
                problems.append(Diagnostic(pos, f"{what}: {needs}.{attr} is an output of {needs}, known only once "
                                                f"it has run; {what} can read {needs}'s axes, {needs}.input.<field> "
                                                f"and {needs}.job_id"))
    return reads_input


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


def _taken(stage: Stage, up: StagePlan, plans: Mapping[str, StagePlan], problems: list[Diagnostic],
           narrowed: bool = False) -> list[Job]:
    """The upstream jobs ``stage`` takes: those ``where`` keeps. ``narrowed``: ``--only`` left out
    some upstream jobs, so a ``where`` value no job has, or a stage that takes nothing, is no
    mistake of the recipe."""
    assert stage.needs is not None
    needs = stage.needs
    taken: dict[str, set[str]] = {w.axis: set() for w in stage.where}
    kept: list[Job] = []
    for job in up.plan.jobs:
        if not stage.where:
            kept.append(job)
            continue
        lineage = _lineage(plans, up, job)
        for w in stage.where:
            if w.axis in lineage:
                taken[w.axis].add(lineage[w.axis])
        if all(lineage.get(w.axis) in w.labels for w in stage.where):
            kept.append(job)
    for w in () if narrowed else stage.where:
        for label, at in sorted(w.value_pos.items()):
            if label not in taken[w.axis]:
                known = ", ".join(sorted(taken[w.axis])) or "none"
                problems.append(Diagnostic(at, f"where: no job of {needs!r} has {w.axis}={label} (values: {known})"))
    if not kept and up.plan.jobs and not problems and not narrowed:
        wanted = " and ".join(f"{w.axis}={'|'.join(sorted(w.labels))}" for w in stage.where)
        problems.append(Diagnostic(stage.needs_pos or stage.pos, f"stage {stage.name!r} takes no job of {needs!r}: "
                                                                 f"none has {wanted}; widen its where"))
    return kept


def _source(stage: Stage, reads: _Reads, values: int) -> str:
    """What the implicit axis's ``values`` are, for a message: ``4 jobs of 'draft'``."""
    if reads.fan is not None:
        return f"{values:,} files of {stage.needs}.{reads.fan.field}, counted {reads.fan.counted}"
    kept = " kept by where" if stage.where else ""
    return f"{values:,} job{'s' if values != 1 else ''} of {stage.needs!r}{kept}"


def _upstream_axis(stage: Stage, up: StagePlan, plans: Mapping[str, StagePlan], reads: _Reads,
                   taken: Sequence[Job]) -> Axis:
    """The implicit axis named after the stage ``stage`` needs: one value per upstream job taken
    (per file, for a list read as files)."""
    assert stage.needs is not None
    needs, pos = stage.needs, stage.needs_pos or stage.pos
    values: list[AxisValue] = []
    outputs = {f.name: f for f in up.outputs.fields}
    for job in taken:
        axes = dict(_values(plans, up, job))
        base: dict[str, Any] = {k: v for k, v in axes.items() if k not in RESERVED and k not in outputs
                                and k not in _DICT_ATTRS}
        base.update(name=job.id, job_id=job.id, key=job.key, stage=needs, axes=axes)
        if reads.input:
            base["input"] = up.plan.render(job).request
        fan = reads.fan.field if reads.fan is not None else None
        for i in range(reads.fan.files(job) if reads.fan is not None else 1):
            value = dict(base)
            for f in reads.fields:
                value[f] = token(Ref(needs, job.key, f, i if f == fan else 0))
            label = f"{job.id}.{i}" if fan is not None else job.id
            value["name"] = label
            values.append(AxisValue(value, pos, label, label))
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


def _foreign_tokens(sp: StagePlan, up: StagePlan, problems: list[Diagnostic]) -> None:
    """A stage reads only the stage it needs: an output of a stage further up, read through the
    upstream's request (``refine.input.image``), would reach the request as a token. Only a
    request that holds tokens can pass one on: every job is looked at then (a template may
    read it for some jobs only)."""
    needs = up.name
    if up.needs is None:
        return
    seen: set[tuple[str | int, ...]] = set()
    for job in sp.plan.jobs:
        for path, ref, _ in find_refs(sp.plan.render(job).request):
            if ref.stage != needs and path not in seen:
                seen.add(path)
                pos = sp.plan.templates.positions.get(path) or sp.plan.recipe.input_pos
                files = ", ".join(f"{needs}.{f.name}" for f in up.outputs.file_fields) or "none"
                problems.append(Diagnostic(pos, f"{field_name(path)}: reads an output of {ref.stage!r} through "
                                                f"{needs!r} ({needs}.input); a stage reads only the outputs of the "
                                                f"stage it needs: read an output of {needs!r} itself ({files}), or "
                                                f"add a stage that needs {ref.stage!r}"))


def _priced_by_text(p: Plan, texts: Sequence[tuple[str, str, Position]], needs: str, max_job: int | None,
                    problems: list[Diagnostic]) -> Plan:
    """A stage whose app bills the length of a text that holds an upstream value: the length is
    known only at the run, so each job is counted at the most that field takes (else at
    ``--max-job-usd``), with a warning saying so."""
    pricing = p.app.pricing
    read = next(((ref, pos) for ref, name, pos in texts if name == pricing.quantity_field), None)
    if read is None or pricing.quantity_of != "length" or pricing.confidence == "unknown":
        return p
    ref, pos = read
    where, unit = f"input.{pricing.quantity_field}", pricing.unit
    limit = _max_length(p.app.input_schema, pricing.quantity_field)
    if limit is None and max_job is None:
        problems.append(Diagnostic(pos, f"{where} reads {ref}, whose length is known only once {needs} has run, "
                                        f"and {p.app.name} bills per {unit} of {pricing.quantity_field} with no "
                                        "longest text in its schema: pass --max-job-usd USD (what each job reserves)"))
        return p
    units = None if limit is None else math.ceil(limit / pricing.length_per_unit)
    jobs: list[Job] = []
    for job in p.jobs:
        cost = max_job
        if units is not None:
            bounds = pricing.unit_bounds(p.render(job).request if pricing.rates else {})
            assert bounds is not None  # (the price is known)
            cost = units * bounds[1]
        assert cost is not None
        if max_job is not None and cost > max_job:
            problems.append(Diagnostic(pos, f"a task costs up to {format_usd(cost)} ({where} counted at its "
                                            f"longest, {units:,} {unit}s), more than --max-job-usd "
                                            f"{format_usd(max_job)}", job.label))
            return p
        jobs.append(make_job(job.id, job.key, job.combination, job.repeat_index, units or job.units, cost,
                             job.output_name, job.show_repeat))
    most = (f"the most {where} takes ({units:,} {unit}s)" if units is not None
            else f"--max-job-usd ({format_usd(max_job or 0)})")
    warning = Diagnostic(pos, f"{where} reads {ref}, whose length is known only once {needs} has run: each job is "
                              f"counted at {most}; the run settles what is billed")
    return dataclasses.replace(p, jobs=tuple(jobs), total_cost=sum(j.cost for j in jobs),
                               total_units=sum(j.units for j in jobs), warnings=(*p.warnings, warning))


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
        if stage.needs is None:
            too_many = size_problem(stage, None, "", total, max_jobs)
        else:
            up = plans.get(stage.needs)
            if up is None:  # the stage it needs could not be planned: its problems are reported
                continue
            found: list[Diagnostic] = []
            taken: list[Job] = []
            reads = _check_reads(stage, stage.recipe, up, lineage_axes(pipeline, stage.needs), found, schemas)
            if not found:
                narrowed = any(plans[s.name].plan.filtered_out for s in pipeline.chain(stage.needs))
                taken = _taken(stage, up, plans, found, narrowed)
            if found:
                problems += sorted(found, key=_at)
                continue
            # counted before the axis is built and the matrix expanded: a hostile chain is refused at once
            values = sum(reads.fan.files(j) for j in taken) if reads.fan is not None else len(taken)
            too_many = size_problem(stage, values, _source(stage, reads, values), total, max_jobs)
            if too_many is None:
                axis = _upstream_axis(stage, up, plans, reads, taken)
        if too_many is not None:
            problems.append(too_many)
            break  # the stages below would be counted on top of a chain already too large
        recipe = _stage_recipe(stage, axis)
        try:
            p = plan(recipe, only=_stage_only(recipe, axis, only), budget_usd=budget_usd, out_dir=out_dir,
                     check_file=check_file, max_jobs=max_jobs, schemas=schemas, max_job_usd=max_job_usd)
        except RecipeError as exc:
            problems += exc.diagnostics
            continue
        if stage.needs is not None:
            found = []
            p = _priced_by_text(p, reads.texts, stage.needs, max_job_usd, found)
            sp = StagePlan(stage.name, p, stage.needs, OutputSpec.from_schema(p.app.output_schema), reads.fan)
            _foreign_tokens(sp, plans[stage.needs], found)
            if found:
                problems += sorted(found, key=_at)
                continue
        else:
            sp = StagePlan(stage.name, p, None, OutputSpec.from_schema(p.app.output_schema))
        total += len(p.jobs)  # within max_jobs: the stage was counted at most before it was planned
        plans[stage.name] = sp
    if problems:
        raise RecipeError(problems[:MAX_SHOWN_ERRORS], total=len(problems))
    return joined(pipeline, [plans[s.name] for s in pipeline.stages])


def _at(d: Diagnostic) -> tuple[str, int, int]:
    return (d.position.file, d.position.line, d.position.col) if d.position is not None else ("", 0, 0)


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
