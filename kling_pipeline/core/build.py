"""The per-job loop of ``plan``: each combination rendered, checked, keyed, named and priced.

Plain request templates go through the compiled ``kernel``; every job it leaves (and
every job of other templates) goes through the general path below, which renders the
request, checks it against the app schema and the named files, and reports each problem
at the YAML that produced it. Problems are grouped: one line for many combinations.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .errors import Diagnostic, Position
from .jobs import Job, content_key, job_id, make_job, slug
from .kernel import Kernel
from .localfiles import FileChecker, FileProblem, FileResolver, classify
from .matrix import Combination
from .money import format_usd
from .outnames import name_problem, plain_name
from .recipe import Recipe
from .render import RenderError, TemplateSet
from .schemas import AppSpec
from .validate import RequestValidator

__all__ = ["Builder", "Problems", "context", "value_origin"]


def context(recipe: Recipe, combo: Combination, repeat_index: int) -> dict[str, Any]:
    """What the templates of one job see: vars, the combination, ``recipe`` and ``repeat_index``."""
    return {**recipe.vars, **combo.values, "recipe": recipe.name, "repeat_index": repeat_index}


def value_origin(recipe: Recipe, combo: Combination, name: str) -> Position | None:
    pick = combo.pick(name)
    return pick.pos if pick is not None else recipe.var_origins.get(name)


class Problems:
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


class Builder:
    """The per-job loop of ``plan``; holds what it has seen so far."""

    def __init__(self, recipe: Recipe, app: AppSpec, templates: TemplateSet, filename: TemplateSet,
                 validator: RequestValidator, check_file: FileChecker, max_job: int | None = None) -> None:
        self.recipe, self.app, self.templates, self.filename = recipe, app, templates, filename
        self.validator = validator
        self.max_job = max_job  # --max-job-usd: the most one job may cost, reserved where the price is unknown
        self.problems = Problems()
        self.warnings = Problems()
        self.jobs: list[Job] = []
        self.seen_keys: dict[str, Job] = {}
        self.seen_ids: set[str] = set()
        self.names: dict[str, Job] = {}
        self.collapsed = 0
        self.unbounded = 0  # jobs whose price is unknown (they reserve nothing: `run` refuses them)
        self.files = FileResolver(validator.file_fields, check_file)
        self.app_ref = str(recipe.app)
        self.fname_leaf = filename.leaves[("filename",)]
        self.only_values: dict[str, dict[str, None]] = {}  # --only axis -> its labels, in first-seen order
        self.stopped = False  # a template went past its bounds: the other jobs would only repeat that
        self.show_repeat = recipe.repeat > 1
        self.returned_cap = app.returned_cap
        self.kernel = Kernel.build(recipe.name, recipe.vars, templates, self.fname_leaf, validator, app.pricing,
                                   self.app_ref, self.returned_cap)
        self._slugs: dict[int, str] = {}  # id(pick) -> its part of job ids
        self._alive: list[Any] = []  # the picks in _slugs
        self._costs: dict[int, int | None] = {}  # units -> microcents (fast path): one int object per price

    def run(self, combos: Iterable[Combination], only: Mapping[str, set[str]]) -> int:
        filtered = 0
        repeats = range(self.recipe.repeat)
        kernel = self.kernel
        keys, binding = None, None  # the kernel's binding for the last combination's keys
        seen_keys = self.seen_keys
        fast_costs = self._costs
        for combo in combos:
            if only:
                labels = combo.labels
                for a in only:  # every value an --only axis takes, to refuse a value it never takes
                    if a in labels:
                        self.only_values.setdefault(a, {})[labels[a]] = None
                if not all(labels.get(a) in vals for a, vals in only.items()):
                    filtered += 1
                    continue
            if kernel is not None and combo.keys is not keys:
                keys = combo.keys
                binding = kernel.binding(keys)
            for r in repeats:
                if binding is not None:
                    fast = binding.request(combo.picks, r)
                    if fast is not None and fast[0] not in seen_keys:
                        units = fast[1]
                        cost = fast_costs[units] if units in fast_costs else self.fast_cost(units)
                        self.finish(combo, r, fast[0], units, None, binding.filename, cost)
                        continue
                self.job(combo, r)
                if self.stopped:
                    return filtered
        return filtered

    def origin(self, combo: Combination, path: tuple[str | int, ...]) -> Position:
        return self.templates.origin(path, lambda n: value_origin(self.recipe, combo, n))

    def label(self, combo: Combination, r: int) -> Callable[[], str]:
        show_repeat = self.show_repeat

        def label() -> str:
            return Job("", "", combo, r, 0, 0, "", show_repeat).label

        return label

    def job(self, combo: Combination, r: int) -> None:
        """The general path: render, check, key and name one job, reporting what is wrong."""
        recipe = self.recipe
        label = self.label(combo, r)
        ctx = context(recipe, combo, r)
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
        if units > self.returned_cap:
            per = format_usd(pricing.cost(request))
            self.warnings.add(
                self.origin(combo, (pricing.quantity_field,)),
                f"input.{pricing.quantity_field} = {units}: billed as {units} images ({per} a task) "
                f"but the app returns {pricing.images_returned_per_task}; use 'repeat: {units}' "
                f"with {pricing.quantity_field}: 1 to get {units} images", label)
        key = content_key(self.app_ref, keyed, r)
        first = self.seen_keys.get(key)
        if first is not None:
            self.collapsed += 1
            # point at the value that makes this combination differ from the first (it has no effect)
            firsts = dict(zip(first.combination.keys, first.combination.picks, strict=True))
            where = next((p.pos for k, p in zip(combo.keys, combo.picks, strict=True) if firsts.get(k) is not p),
                         recipe.input_pos)
            self.warnings.add(where, f"identical to {first.id} {first.label}: same request, run once", label)
            return
        bounds = pricing.cost_range(request)
        self.finish(combo, r, key, units, ctx, None, self.max_job if bounds is None else bounds[1])

    def fast_cost(self, units: int) -> int | None:
        """What a job of ``units`` reserves when the price reads no other field (the kernel's jobs)."""
        try:
            return self._costs[units]
        except KeyError:
            bounds = self.app.pricing.unit_bounds({})  # no rates: the same for every request
            cost = self._costs[units] = self.max_job if bounds is None else units * bounds[1]
            return cost

    def job_id(self, combo: Combination, r: int) -> str:
        """``job_id(combo, r, repeat)``, with each pick's part of the id worked out once."""
        slugs = self._slugs
        try:
            parts = [slugs[id(pick)] for pick in combo.picks]
        except KeyError:
            for pick in combo.picks:
                if id(pick) not in slugs:
                    slugs[id(pick)] = pick.part or slug(pick.label)
                    self._alive.append(pick)  # its id stays its own
            parts = [slugs[id(pick)] for pick in combo.picks]
        if not parts:
            return job_id(combo, r, self.recipe.repeat)
        if self.show_repeat:
            parts.append(f"r{r}")
        return "-".join(parts)

    def finish(self, combo: Combination, r: int, key: str, units: int, ctx: dict[str, Any] | None,
               fast_name: Callable[[tuple[Any, ...], int, str, str], str | None] | None, cost: int | None) -> None:
        """Name a job whose request is valid and new, and keep it. ``cost``: what it reserves (the
        upper bound of its price; None: unknown, and no --max-job-usd)."""
        if cost is not None and self.max_job is not None and cost > self.max_job:
            field = self.app.pricing.quantity_field
            where = self.origin(combo, (field,)) if field else self.recipe.app_pos
            self.problems.add(where, f"a task costs up to {format_usd(cost)}, more than --max-job-usd "
                                     f"{format_usd(self.max_job)}", self.label(combo, r))
            return
        jid = self.job_id(combo, r)
        if jid in self.seen_ids:
            jid = f"{jid}~{key[:6]}"
        self.seen_ids.add(jid)
        name = fast_name(combo.picks, r, jid, key) if fast_name is not None else None
        if name is None:
            if ctx is None:
                ctx = context(self.recipe, combo, r)
            ctx["job_id"], ctx["short_key"], ctx["image_index"] = jid, key[:10], 0
            try:
                name = str(self.fname_leaf.render(ctx)).strip()
            except RenderError as exc:
                self.problems.add(exc.pos, exc.message, self.label(combo, r))
                self.stopped = exc.fatal
                return
        if not plain_name(name):  # (a plain name, one path part, needs no check)
            why = name_problem(name)
            if why:
                self.problems.add(self.fname_leaf.pos, f"output.filename {why}", self.label(combo, r))
                return
            if "//" in name or "/./" in name or name.startswith("./"):
                name = os.path.normpath(name)
        other = self.names.get(name)
        if other is not None:
            self.problems.add(self.fname_leaf.pos, f"output.filename renders {name!r} for {other.label} too; "
                                                   "add a matrix key or {{ short_key }} to the name",
                              self.label(combo, r))
            return
        if cost is None:
            self.unbounded += 1
        job = make_job(jid, key, combo, r, units, cost or 0, name, self.show_repeat)
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
