"""From a recipe to a priced, validated plan — before anything is spent.

``plan(recipe)`` expands the matrix (streaming), renders each request, checks it
against the app's input schema and the named files, computes its content key,
id, output name and exact cost, and returns a frozen ``Plan``. Problems are
collected for every job and raised together as one ``RecipeError``; identical
problems from many combinations are grouped.

Reading reference images is the only I/O; it goes through ``check_file``.
"""

from __future__ import annotations

import difflib
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import Any

from .appstore import SchemaStore, locate_store, resolve_app
from .build import Builder, context, value_origin
from .chainsize import FanOut
from .combofilter import Filter
from .errors import Diagnostic, Position, RecipeError, UsageError
from .fileaxes import own_outputs
from .jobs import Job
from .loading import RecipeSource, load_any_partial
from .localfiles import FileChecker, FileProblem, FileResolver, LocalFile, check_path, classify
from .matrix import expand
from .meter import plan_meter
from .outnames import escaping_names, output_dir
from .outputs import OutputSpec
from .recipe import INVALID_INPUT, Recipe, value_label
from .render import TemplateSet, field_name, make_environment
from .schemas import AppSpec, UnknownAppError
from .stages import Pipeline
from .sweep import DEFAULT_MAX_JOBS, size_problems
from .validate import RequestValidator
from .yamlsrc import Node

__all__ = ["DEFAULT_MAX_JOBS", "MAX_SHOWN_ERRORS", "AxisCost", "Plan", "RenderedJob", "find_app", "parse_only",
           "plan", "plan_file"]

MAX_SHOWN_ERRORS = 50
BASE_NAMES = ("recipe", "repeat_index")
OUTPUT_NAMES = ("job_id", "short_key", "image_index")


@dataclass(frozen=True, slots=True)
class AxisCost:
    value: str
    jobs: int
    units: int
    cost: int


@dataclass(frozen=True, slots=True)
class RenderedJob:
    """What the run sends for a job: the request, and the local files to upload first."""

    request: dict[str, Any]
    files: Mapping[str, LocalFile]  # request field -> checked local file / data: URI


@dataclass(slots=True)
class StagePlan:
    """One stage of a pipeline's plan: its own plan (downstream jobs keyed with tokens for the
    files they read: see ``chain``), the stage it needs, and what its app returns."""

    name: str
    plan: Plan
    needs: str | None
    outputs: OutputSpec
    fan: FanOut | None = None  # the list output of the upstream read one file per job, and how it is counted
    _index: dict[str, Job] | None = None

    @property
    def fanout(self) -> str | None:
        """The list output of the upstream read one file per job (counted at most), or None."""
        return self.fan.field if self.fan is not None else None

    def index(self) -> dict[str, Job]:
        """The stage's jobs by plan-time key (made on first use)."""
        if self._index is None:
            self._index = {j.key: j for j in self.plan.jobs}
        return self._index

    def job(self, key: str) -> Job:
        return self.index()[key]

    def has(self, key: str) -> bool:
        return key in self.index()


@dataclass(frozen=True, slots=True)
class Plan:
    recipe: Recipe
    app: AppSpec
    jobs: tuple[Job, ...]
    warnings: tuple[Diagnostic, ...]
    budget_microcents: int | None
    output_dir: Path
    total_cost: int
    total_units: int
    images_returned: int
    collapsed: int  # identical jobs merged into one
    filtered_out: int  # combinations dropped by --only
    templates: TemplateSet = field(compare=False, repr=False)
    validator: RequestValidator = field(compare=False, repr=False)
    files: FileResolver = field(compare=False, repr=False)
    removed_by_filter: int = 0  # combinations matrix.filter left out (before --only)
    max_job_microcents: int | None = None  # --max-job-usd: reserved by each job whose price is unknown
    unbounded: int = 0  # jobs whose price is unknown and not bounded (each reserves nothing): `run` refuses
    stages: tuple[StagePlan, ...] = ()  # a pipeline's stages (``jobs`` holds them all); () for one stage
    pipeline: Pipeline | None = field(default=None, compare=False, repr=False)

    def check_bounded(self) -> None:
        """``RecipeError`` when some job's price is unknown and nothing bounds it: a run could not
        keep its budget (``price.usd_per_unit`` in the recipe or ``--max-job-usd`` would)."""
        if self.stages:
            for sp in self.stages:
                sp.plan.check_bounded()
            return
        if not self.unbounded:
            return
        pricing = self.app.pricing
        why = f" ({pricing.note})" if pricing.note else ""
        jobs = f"{self.unbounded:,} job{'s' if self.unbounded != 1 else ''}"
        raise RecipeError([Diagnostic(self.recipe.app_pos, (
            f"the price of {self.app.name} is unknown{why}, so the budget cannot hold {jobs}: set "
            f"price.usd_per_unit in the recipe (USD per {pricing.unit}) or pass --max-job-usd USD (the most one "
            "job may cost)"))])

    @property
    def lowest_cost(self) -> int | None:
        """The least the plan may cost: ``total_cost`` for an exact price, the sum of the lower
        bounds for a range (``total_cost`` is then the upper bound); None when the price is unknown."""
        if self.stages:
            lows = [sp.plan.lowest_cost for sp in self.stages]
            return None if any(low is None for low in lows) else sum(low or 0 for low in lows)
        pricing = self.app.pricing
        if pricing.confidence == "exact":
            return self.total_cost
        if pricing.confidence == "unknown" or pricing.min_microcents_per_unit is None:
            return None
        return self.total_units * pricing.min_microcents_per_unit

    def stage_of(self, job: Job) -> StagePlan | None:
        """The stage ``job`` (a plan-time job) belongs to; None for a one-stage plan."""
        for sp in self.stages:
            if sp.has(job.key):
                return sp
        return None

    @property
    def over_budget(self) -> int:
        """Microcents above the budget (0 when within or no budget)."""
        if self.budget_microcents is None:
            return 0
        return max(0, self.total_cost - self.budget_microcents)

    def context(self, job: Job) -> dict[str, Any]:
        return context(self.recipe, job.combination, job.repeat_index)

    def render(self, job: Job) -> RenderedJob:
        """Re-render a job's request (deterministic; the plan keeps no rendered inputs).
        A pipeline's downstream job is rendered with tokens for the files it reads (see ``chain``)."""
        if self.stages:
            sp = self.stage_of(job)
            if sp is not None:
                return sp.plan.render(job)
        request = self.templates.render(self.context(job))
        files: dict[str, LocalFile] = {}
        for name in self.validator.file_fields:
            value = request.get(name)
            if isinstance(value, str) and classify(value) != "url":
                origin = self.templates.origin((name,), lambda n: value_origin(self.recipe, job.combination, n))
                found = self.files.resolve(name, value, origin.file)
                if isinstance(found, FileProblem):  # the file changed since the plan was made
                    raise RecipeError([Diagnostic(origin, f"input.{name}: {found}", job.label)])
                files[name] = found
        return RenderedJob(request, files)

    def breakdown(self) -> dict[str, list[AxisCost]]:
        """Jobs, units and cost per value of every matrix key, in first-seen order."""
        table = _tally(self.jobs)
        out: dict[str, list[AxisCost]] = {}
        for (axis, value), row in table.items():
            out.setdefault(axis, []).append(AxisCost(value, *row))
        return out


def _tally(jobs: Sequence[Job]) -> dict[tuple[str, str], list[int]]:
    """(key, value label) -> [jobs, units, cost], in first-seen order. When every job costs
    the same (the usual case), the pairs are counted without a Python loop per job."""
    units, costs = set(map(attrgetter("units"), jobs)), set(map(attrgetter("cost"), jobs))
    if len(units) != 1 or len(costs) != 1:
        return _tally_by_label(jobs)
    (unit,), (cost,) = units, costs
    combos = list(map(attrgetter("combination"), jobs))
    keys = chain.from_iterable(map(attrgetter("keys"), combos))
    labels = map(attrgetter("label"), chain.from_iterable(map(attrgetter("picks"), combos)))
    return {item: [n, n * unit, n * cost] for item, n in Counter(zip(keys, labels, strict=True)).items()}


def _tally_by_label(jobs: Sequence[Job]) -> dict[tuple[str, str], list[int]]:
    table: dict[tuple[str, str], list[int]] = {}
    for job in jobs:
        for item in job.combination.labels.items():
            row = table.setdefault(item, [0, 0, 0])
            row[0] += 1
            row[1] += job.units
            row[2] += job.cost
    return table


def parse_only(items: Sequence[str]) -> dict[str, set[str]]:
    """``["style=noir", "style=pop", "ratio=1:1"]`` -> ``{"style": {...}, "ratio": {...}}``."""
    out: dict[str, set[str]] = {}
    for item in items:
        axis, sep, value = item.partition("=")
        if not sep or not axis.strip():
            raise UsageError(f"--only takes axis=value, got {item!r}")
        out.setdefault(axis.strip(), set()).add(value.strip())
    return out


def _raise(problems: list[Diagnostic]) -> None:
    if problems:
        raise RecipeError(problems[:MAX_SHOWN_ERRORS], total=len(problems))


def _static_checks(recipe: Recipe, app: AppSpec, templates: TemplateSet, filename: TemplateSet,
                   validator: RequestValidator) -> tuple[list[Diagnostic], list[Diagnostic]]:
    problems = [Diagnostic(e.pos, e.message) for e in (*templates.errors, *filename.errors)]
    warnings: list[Diagnostic] = []
    if app.name != recipe.app.name:  # pragma: no cover - load_app looks up by name
        problems.append(Diagnostic(recipe.app_pos, f"app data mismatch: {app.name}"))
    keys = {k: c.key_pos for k, c in recipe.input.items()}
    if recipe.input.tag != INVALID_INPUT:  # a missing/malformed input is reported once, by the shape check
        for fieldname, message in validator.check_keys(keys):
            problems.append(Diagnostic(keys.get(fieldname) if fieldname else recipe.input_pos, message))
    known = _known(recipe)
    for ts, extra in ((templates, ()), (filename, OUTPUT_NAMES)):
        for leaf, name in ts.names():
            if name not in known and name not in extra:
                hint = difflib.get_close_matches(name, sorted(known | set(extra)), n=1)
                suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
                where = field_name(leaf.path, ts.prefix)
                problems.append(Diagnostic(leaf.pos, f"{where}: {name!r} is undefined{suggestion} "
                                                     f"(known names: {', '.join(sorted(known))})"))
    if not validator.closed and recipe.input.tag != INVALID_INPUT:  # an open schema: the app ignores the rest
        for name in [k for k in keys if k not in validator.properties]:
            hint = difflib.get_close_matches(name, list(validator.properties), n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
            warnings.append(Diagnostic(keys[name], f"input.{name} is not a field of {app.name}{suggestion} (its schema "
                                                   "lets it through; the app will most likely ignore it; fields: "
                                                   f"{', '.join(validator.properties)})"))
    for name in validator.ignored_fields & set(keys):
        warnings.append(Diagnostic(keys[name], f"input.{name} is accepted by {app.name} but not forwarded "
                                               "to the model by the current app version: it has no effect"))
    if recipe.app.version is None and app.pinned_version:
        warnings.append(Diagnostic(recipe.app_pos, f"app is not pinned: write '{app.name}@{app.pinned_version}'"
                                                   " for a reproducible sweep"))
    return problems, warnings


def _known(recipe: Recipe) -> set[str]:
    """The names a template may read (besides the output names)."""
    known = set(recipe.vars) | set(BASE_NAMES) | set(recipe.matrix.axis_names) | set(recipe.declared)
    return known | {k for e in recipe.matrix.include for k in e.values}


def find_app(recipe: Recipe, schemas: SchemaStore | None = None) -> AppSpec:
    """The app data ``recipe.app`` names (``appstore.resolve_app``): from ``schemas``, else the
    store found from the recipe's directory, else the bundled data; ``RecipeError`` at ``app``."""
    store = schemas or locate_store(Path(recipe.file).parent)
    try:
        return resolve_app(recipe.app, store).spec
    except UnknownAppError as exc:
        raise RecipeError([Diagnostic(recipe.app_pos, str(exc))]) from None


def _prepare(recipe: Recipe, app: AppSpec | None, schemas: SchemaStore | None = None) -> tuple[
        AppSpec, TemplateSet, TemplateSet, RequestValidator, Filter, list[Diagnostic], list[Diagnostic]]:
    spec = app or find_app(recipe, schemas)
    if recipe.price_microcents is not None:
        if recipe.price_key == "usd_per_image" and spec.pricing.unit != "image":
            raise RecipeError([Diagnostic(recipe.price_pos or recipe.app_pos,
                                          f"price.usd_per_image: {spec.name} bills per {spec.pricing.unit}, not per "
                                          "image; write price.usd_per_unit (USD per "
                                          f"{spec.pricing.unit})")])
        spec = spec.with_price(recipe.price_microcents)
    env = make_environment()
    templates = TemplateSet(env, recipe.input)
    fname_pos = recipe.output.filename_pos or recipe.input_pos
    filename = TemplateSet(env, Node({"filename": Node(recipe.output.filename, fname_pos)}, fname_pos), "output")
    validator = RequestValidator(spec.input_schema)
    problems, warnings = _static_checks(recipe, spec, templates, filename, validator)
    chooser = Filter(env, recipe.matrix.filter)
    problems += chooser.errors + chooser.undefined(_known(recipe) - {"repeat_index"})
    return spec, templates, filename, validator, chooser, problems, warnings


def plan_file(path: RecipeSource, *, base_dir: str | os.PathLike[str] | None = None, **options: Any) -> Plan:
    """Load and plan a recipe (a file, YAML text or a mapping: see ``load_recipe``), reporting
    every problem at once: shape problems together with the template and request-field
    problems that can be found without expanding the matrix. Options are those of ``plan``."""
    try:
        got, problems = load_any_partial(path, base_dir=base_dir,
                                         max_jobs=options.get("max_jobs", DEFAULT_MAX_JOBS))
    except RecipeError as exc:  # unreadable file or YAML errors: shown capped like the rest
        if len(exc.diagnostics) <= MAX_SHOWN_ERRORS:
            raise
        raise RecipeError(exc.diagnostics[:MAX_SHOWN_ERRORS], total=exc.total) from None
    if not isinstance(got, Recipe):
        if problems or got is None:
            _raise(sorted(problems, key=lambda d: (d.position or Position("", 0, 0), d.message)))
        assert got is not None
        from .chain import plan_pipeline  # (the pipeline planner plans each stage with ``plan``)

        options.pop("app", None)  # each stage has its own app
        return plan_pipeline(got, **options)
    recipe = got
    if problems:
        more: list[Diagnostic] = []
        if recipe.app.name:
            try:
                more = _prepare(recipe, options.get("app"), options.get("schemas"))[5]
            except RecipeError as exc:
                more = list(exc.diagnostics)
        seen = set(problems)
        _raise(sorted(problems + [d for d in more if d not in seen],
                      key=lambda d: (d.position or Position("", 0, 0), d.message)))
    return plan(recipe, **options)


def only_sets(only: Mapping[str, Any] | None) -> dict[str, set[str]]:
    """``only`` as ``{axis: {label, ...}}``: a single value (``{"style": "noir"}``) is one label, not
    its characters; values that are not strings are read as the plan labels them (``1``, ``true``)."""
    out: dict[str, set[str]] = {}
    for axis, wanted in (only or {}).items():
        values = [wanted] if isinstance(wanted, str | bytes) or not isinstance(wanted, Iterable) else wanted
        out[str(axis)] = {v if isinstance(v, str) else value_label(v) for v in values}
    return out


def plan(recipe: Recipe, *, app: AppSpec | None = None, only: Mapping[str, Any] | None = None,
         budget_usd: int | None = None, out_dir: str | os.PathLike[str] | None = None,
         check_file: FileChecker = check_path, max_jobs: int = DEFAULT_MAX_JOBS,
         schemas: SchemaStore | None = None, max_job_usd: int | None = None) -> Plan:
    """Expand, render, validate and price ``recipe``. Raises ``RecipeError`` with every problem.

    ``budget_usd`` (microcents) is a command-line cap; the lower of it and the recipe's wins.
    A sweep of more than ``max_jobs`` jobs is refused before it is expanded. ``schemas``: the
    schema store (default: the one found from the recipe's directory, see ``appstore``).
    ``max_job_usd`` (microcents): the most one job may cost; a job whose price is unknown
    reserves it, a job that may cost more is an error.
    """
    if out_dir is not None and "\x00" in os.fspath(out_dir):
        raise UsageError("--out: a directory name cannot hold a NUL character")
    _raise(size_problems(recipe, max_jobs))
    spec, templates, filename, validator, chooser, problems, warnings = _prepare(recipe, app, schemas)
    _raise(problems + own_outputs(recipe.matrix, output_dir(recipe, out_dir)))
    only = only_sets(only)
    keys_known = set(recipe.matrix.axis_names) | {k for e in recipe.matrix.include for k in e.values}
    for axis in only:
        if axis not in keys_known:
            raise UsageError(f"--only {axis}=...: the recipe has no matrix key {axis!r} "
                             f"(keys: {', '.join(sorted(keys_known)) or 'none'})")
    builder = Builder(recipe, spec, templates, filename, validator, check_file, max_job_usd)
    combos = expand(recipe.matrix)
    with plan_meter():  # what every render of this plan spends, in all
        filtered = builder.run(chooser.keep(combos, recipe, builder.problems) if chooser else combos, only)
    for axis, wanted in only.items():
        taken = builder.only_values.get(axis, {})
        for value in sorted(v for v in wanted if v not in taken):
            known = ", ".join(taken) or "none"
            left = f"; matrix.filter left out {chooser.removed:,}" if chooser.removed else ""
            raise UsageError(f"--only {axis}={value}: no combination has {axis}={value} (values: {known}{left})")
    problems = builder.problems.diagnostics() + escaping_names(output_dir(recipe, out_dir), builder.names,
                                                               builder.fname_leaf.pos)
    _raise(problems)
    caps = [c for c in (recipe.budget_microcents, budget_usd) if c is not None]
    jobs = tuple(builder.jobs)
    return Plan(
        recipe=recipe, app=spec, jobs=jobs, warnings=tuple(warnings + builder.warnings.diagnostics()),
        budget_microcents=min(caps) if caps else None, output_dir=output_dir(recipe, out_dir),
        total_cost=sum(map(attrgetter("cost"), jobs)), total_units=sum(map(attrgetter("units"), jobs)),
        images_returned=(sum(map(attrgetter("units"), jobs)) if spec.returns_every_image
                         else len(jobs) * spec.pricing.images_returned_per_task), collapsed=builder.collapsed,
        filtered_out=filtered, templates=templates, validator=validator, files=builder.files,
        removed_by_filter=chooser.removed, max_job_microcents=max_job_usd, unbounded=builder.unbounded,
    )
