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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import Diagnostic, Position, RecipeError, UsageError
from .jobs import Job, content_key, job_id
from .loading import load_recipe_partial
from .localfiles import FileChecker, FileProblem, FileResolver, LocalFile, check_path, classify
from .matrix import Combination, expand
from .meter import plan_meter
from .money import format_usd
from .outnames import escaping_names, name_problem, output_dir
from .recipe import INVALID_INPUT, Recipe
from .render import RenderError, TemplateSet, field_name, make_environment
from .schemas import AppSpec, UnknownAppError, load_app
from .sweep import DEFAULT_MAX_JOBS, size_problems
from .validate import RequestValidator
from .yamlsrc import Node

__all__ = ["DEFAULT_MAX_JOBS", "MAX_SHOWN_ERRORS", "AxisCost", "Plan", "RenderedJob", "parse_only", "plan",
           "plan_file"]

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

    @property
    def over_budget(self) -> int:
        """Microcents above the budget (0 when within or no budget)."""
        if self.budget_microcents is None:
            return 0
        return max(0, self.total_cost - self.budget_microcents)

    def context(self, job: Job) -> dict[str, Any]:
        return _context(self.recipe, job.combination, job.repeat_index)

    def render(self, job: Job) -> RenderedJob:
        """Re-render a job's request (deterministic; the plan keeps no rendered inputs)."""
        request = self.templates.render(self.context(job))
        files: dict[str, LocalFile] = {}
        for name in self.validator.file_fields:
            value = request.get(name)
            if isinstance(value, str) and classify(value) != "url":
                origin = self.templates.origin((name,), lambda n: _value_origin(self.recipe, job.combination, n))
                found = self.files.resolve(name, value, origin.file)
                if isinstance(found, FileProblem):  # the file changed since the plan was made
                    raise RecipeError([Diagnostic(origin, f"input.{name}: {found}", job.label)])
                files[name] = found
        return RenderedJob(request, files)

    def breakdown(self) -> dict[str, list[AxisCost]]:
        """Jobs, units and cost per value of every matrix key, in first-seen order."""
        table: dict[tuple[str, str], list[int]] = {}  # (axis, value) -> jobs, units, cost
        for job in self.jobs:
            units, cost = job.units, job.cost
            combo = job.combination
            for item in zip(combo.keys, [p.label for p in combo.picks], strict=True):
                row = table.get(item)
                if row is None:
                    table[item] = [1, units, cost]
                else:
                    row[0] += 1
                    row[1] += units
                    row[2] += cost
        out: dict[str, list[AxisCost]] = {}
        for (axis, value), row in table.items():
            out.setdefault(axis, []).append(AxisCost(value, *row))
        return out


def _context(recipe: Recipe, combo: Combination, repeat_index: int) -> dict[str, Any]:
    return {**recipe.vars, **combo.values, "recipe": recipe.name, "repeat_index": repeat_index}


def _value_origin(recipe: Recipe, combo: Combination, name: str) -> Position | None:
    pick = combo.pick(name)
    return pick.pos if pick is not None else recipe.var_origins.get(name)


def parse_only(items: Sequence[str]) -> dict[str, set[str]]:
    """``["style=noir", "style=pop", "ratio=1:1"]`` -> ``{"style": {...}, "ratio": {...}}``."""
    out: dict[str, set[str]] = {}
    for item in items:
        axis, sep, value = item.partition("=")
        if not sep or not axis.strip():
            raise UsageError(f"--only takes axis=value, got {item!r}")
        out.setdefault(axis.strip(), set()).add(value.strip())
    return out


class _Problems:
    """Per-job problems grouped by (position, message): one line for many combinations."""

    def __init__(self) -> None:
        self.groups: dict[tuple[Position | None, str], list[Any]] = {}

    def add(self, pos: Position | None, message: str, label: str | Callable[[], str]) -> None:
        entry = self.groups.get((pos, message))
        if entry is None:
            self.groups[(pos, message)] = [1, label if isinstance(label, str) else label()]
        else:
            entry[0] += 1

    def diagnostics(self) -> list[Diagnostic]:
        out = []
        for (pos, message), (count, label) in self.groups.items():
            more = f" (and {count - 1} more combination{'s' if count > 2 else ''})" if count > 1 else ""
            out.append(Diagnostic(pos, message + more, label))
        return sorted(out, key=lambda d: (d.position or Position("", 0, 0), d.message))


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
    known = set(recipe.vars) | set(BASE_NAMES) | set(recipe.matrix.axis_names) | set(recipe.declared)
    known |= {k for e in recipe.matrix.include for k in e.values}
    for ts, extra in ((templates, ()), (filename, OUTPUT_NAMES)):
        for leaf, name in ts.names():
            if name not in known and name not in extra:
                hint = difflib.get_close_matches(name, sorted(known | set(extra)), n=1)
                suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
                where = field_name(leaf.path, ts.prefix)
                problems.append(Diagnostic(leaf.pos, f"{where}: {name!r} is undefined{suggestion} "
                                                     f"(known names: {', '.join(sorted(known))})"))
    for name in validator.ignored_fields & set(keys):
        warnings.append(Diagnostic(keys[name], f"input.{name} is accepted by {app.name} but not forwarded "
                                               "to the model by the current app version: it has no effect"))
    if recipe.app.version is None and app.pinned_version:
        warnings.append(Diagnostic(recipe.app_pos, f"app is not pinned: write '{app.name}@{app.pinned_version}'"
                                                   " for a reproducible sweep"))
    return problems, warnings


def _prepare(recipe: Recipe, app: AppSpec | None) -> tuple[
        AppSpec, TemplateSet, TemplateSet, RequestValidator, list[Diagnostic], list[Diagnostic]]:
    try:
        spec = app or load_app(recipe.app)
    except UnknownAppError as exc:
        raise RecipeError([Diagnostic(recipe.app_pos, str(exc))]) from None
    if recipe.price_microcents is not None:
        spec = spec.with_price(recipe.price_microcents)
    env = make_environment()
    templates = TemplateSet(env, recipe.input)
    fname_pos = recipe.output.filename_pos or recipe.input_pos
    filename = TemplateSet(env, Node({"filename": Node(recipe.output.filename, fname_pos)}, fname_pos), "output")
    validator = RequestValidator(spec.input_schema)
    problems, warnings = _static_checks(recipe, spec, templates, filename, validator)
    return spec, templates, filename, validator, problems, warnings


def plan_file(path: str | os.PathLike[str], **options: Any) -> Plan:
    """Load and plan a recipe file, reporting every problem at once: shape problems
    together with the template and request-field problems that can be found
    without expanding the matrix. Options are those of ``plan``."""
    try:
        recipe, problems = load_recipe_partial(path)
    except RecipeError as exc:  # unreadable file or YAML errors: shown capped like the rest
        if len(exc.diagnostics) <= MAX_SHOWN_ERRORS:
            raise
        raise RecipeError(exc.diagnostics[:MAX_SHOWN_ERRORS], total=exc.total) from None
    if problems:
        more: list[Diagnostic] = []
        if recipe.app.name:
            try:
                more = _prepare(recipe, options.get("app"))[4]
            except RecipeError as exc:
                more = list(exc.diagnostics)
        seen = set(problems)
        _raise(sorted(problems + [d for d in more if d not in seen],
                      key=lambda d: (d.position or Position("", 0, 0), d.message)))
    return plan(recipe, **options)


def plan(recipe: Recipe, *, app: AppSpec | None = None, only: Mapping[str, set[str]] | None = None,
         budget_usd: int | None = None, out_dir: str | os.PathLike[str] | None = None,
         check_file: FileChecker = check_path, max_jobs: int = DEFAULT_MAX_JOBS) -> Plan:
    """Expand, render, validate and price ``recipe``. Raises ``RecipeError`` with every problem.

    ``budget_usd`` (microcents) is a command-line cap; the lower of it and the recipe's wins.
    A sweep of more than ``max_jobs`` jobs is refused before it is expanded.
    """
    if out_dir is not None and "\x00" in os.fspath(out_dir):
        raise UsageError("--out: a directory name cannot hold a NUL character")
    _raise(size_problems(recipe, max_jobs))
    spec, templates, filename, validator, problems, warnings = _prepare(recipe, app)
    _raise(problems)
    only = only or {}
    keys_known = set(recipe.matrix.axis_names) | {k for e in recipe.matrix.include for k in e.values}
    for axis in only:
        if axis not in keys_known:
            raise UsageError(f"--only {axis}=...: the recipe has no matrix key {axis!r} "
                             f"(keys: {', '.join(sorted(keys_known)) or 'none'})")
    builder = _Builder(recipe, spec, templates, filename, validator, check_file)
    with plan_meter():  # what every render of this plan spends, in all
        filtered = builder.run(expand(recipe.matrix), only)
    for axis, wanted in only.items():
        taken = builder.only_values.get(axis, {})
        for value in sorted(v for v in wanted if v not in taken):
            known = ", ".join(taken) or "none"
            raise UsageError(f"--only {axis}={value}: no combination has {axis}={value} (values: {known})")
    problems = builder.problems.diagnostics() + escaping_names(output_dir(recipe, out_dir), builder.names,
                                                               builder.fname_leaf.pos)
    _raise(problems)
    caps = [c for c in (recipe.budget_microcents, budget_usd) if c is not None]
    jobs = tuple(builder.jobs)
    return Plan(
        recipe=recipe, app=spec, jobs=jobs, warnings=tuple(warnings + builder.warnings.diagnostics()),
        budget_microcents=min(caps) if caps else None, output_dir=output_dir(recipe, out_dir),
        total_cost=sum(j.cost for j in jobs), total_units=sum(j.units for j in jobs),
        images_returned=len(jobs) * spec.pricing.images_returned_per_task, collapsed=builder.collapsed,
        filtered_out=filtered, templates=templates, validator=validator, files=builder.files,
    )


class _Builder:
    """The per-job loop of ``plan``; holds what it has seen so far."""

    def __init__(self, recipe: Recipe, app: AppSpec, templates: TemplateSet, filename: TemplateSet,
                 validator: RequestValidator, check_file: FileChecker) -> None:
        self.recipe, self.app, self.templates, self.filename = recipe, app, templates, filename
        self.validator = validator
        self.problems = _Problems()
        self.warnings = _Problems()
        self.jobs: list[Job] = []
        self.seen_keys: dict[str, Job] = {}
        self.seen_ids: set[str] = set()
        self.names: dict[str, Job] = {}
        self.collapsed = 0
        self.files = FileResolver(validator.file_fields, check_file)
        self.app_ref = str(recipe.app)
        self.fname_leaf = filename.leaves[("filename",)]
        self.only_values: dict[str, dict[str, None]] = {}  # --only axis -> its labels, in first-seen order
        self.stopped = False  # a template went past its bounds: the other jobs would only repeat that

    def run(self, combos: Iterable[Combination], only: Mapping[str, set[str]]) -> int:
        filtered = 0
        for combo in combos:
            if only:
                labels = combo.labels
                for a in only:  # every value an --only axis takes, to refuse a value it never takes
                    if a in labels:
                        self.only_values.setdefault(a, {})[labels[a]] = None
                if not all(labels.get(a) in vals for a, vals in only.items()):
                    filtered += 1
                    continue
            for r in range(self.recipe.repeat):
                self.job(combo, r)
                if self.stopped:
                    return filtered
        return filtered

    def origin(self, combo: Combination, path: tuple[str | int, ...]) -> Position:
        return self.templates.origin(path, lambda n: _value_origin(self.recipe, combo, n))

    def job(self, combo: Combination, r: int) -> None:
        recipe = self.recipe
        show_repeat = recipe.repeat > 1

        def label() -> str:
            return Job("", "", combo, r, 0, 0, "", show_repeat).label

        ctx = _context(recipe, combo, r)
        request, errors = self.templates.render_all(ctx)
        for err in errors:
            self.problems.add(err.pos, err.message, label)
            self.stopped = self.stopped or err.fatal
        if errors:
            return
        bad = False
        for problem in self.validator.check(request):
            self.problems.add(self.origin(combo, problem.path), problem.message, label)
            bad = True
        keyed = self.keyed(request, combo, label) if self.validator.file_fields else request
        if bad or keyed is None:
            return
        pricing = self.app.pricing
        units = pricing.quantity(request)
        if units > pricing.images_returned_per_task:
            per = format_usd(self.app.pricing.cost(request))
            self.warnings.add(
                self.origin(combo, (self.app.pricing.quantity_field,)),
                f"input.{self.app.pricing.quantity_field} = {units}: billed as {units} images ({per} a task) "
                f"but the app returns {self.app.pricing.images_returned_per_task}; use 'repeat: {units}' "
                f"with {self.app.pricing.quantity_field}: 1 to get {units} images", label)
        key = content_key(self.app_ref, keyed, r)
        first = self.seen_keys.get(key)
        if first is not None:
            self.collapsed += 1
            # point at the value that makes this combination differ from the first (it has no effect)
            firsts = first.combination.origins
            where = next((p for k, p in combo.origins.items() if firsts.get(k) != p),
                         recipe.input_pos)
            self.warnings.add(where, f"identical to {first.id} {first.label}: same request, run once", label)
            return
        jid = job_id(combo, r, recipe.repeat)
        if jid in self.seen_ids:
            jid = f"{jid}~{key[:6]}"
        self.seen_ids.add(jid)
        ctx["job_id"], ctx["short_key"], ctx["image_index"] = jid, key[:10], 0
        try:
            name = str(self.fname_leaf.render(ctx)).strip()
        except RenderError as exc:
            self.problems.add(exc.pos, exc.message, label)
            self.stopped = exc.fatal
            return
        why = name_problem(name)
        if why:
            self.problems.add(self.fname_leaf.pos, f"output.filename {why}", label)
            return
        if "//" in name or "/./" in name or name.startswith("./"):
            name = os.path.normpath(name)
        other = self.names.get(name)
        if other is not None:
            self.problems.add(self.fname_leaf.pos, f"output.filename renders {name!r} for {other.label} too; "
                                                   "add a matrix key or {{ short_key }} to the name", label)
            return
        job = Job(jid, key, combo, r, units, units * pricing.microcents_per_unit, name, show_repeat)
        self.names[name] = job
        self.seen_keys[key] = job
        self.jobs.append(job)

    def keyed(self, request: dict[str, Any], combo: Combination, label: Callable[[], str]) -> dict[str, Any] | None:
        """The request with local files as ``sha256:<hex>`` (for the key); None if a file is bad."""
        keyed = request
        for name in self.validator.file_fields:
            value = request.get(name)
            if not isinstance(value, str) or classify(value) == "url":
                continue
            origin = self.origin(combo, (name,))
            found = self.files.resolve(name, value, origin.file)
            if isinstance(found, FileProblem):
                self.problems.add(origin, f"input.{name}: {found}", label)
                return None
            if keyed is request:
                keyed = dict(request)
            keyed[name] = f"sha256:{found.sha256}"
        return keyed
