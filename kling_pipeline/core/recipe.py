"""The recipe model: a located YAML tree checked into frozen dataclasses.

``build_recipe`` takes the (already ``extends``-merged) tree and reports every
shape problem at once, each at its ``file:line:col``. It knows nothing about
the app's API schema; that check happens per expanded request in ``validate``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from .checker import Checker, kind
from .errors import Diagnostic, Position, RecipeError
from .fileaxes import FileLister, file_axis, list_files, looks_like_file_axis
from .matrix import Axis, AxisValue, Condition, MatrixEntry, MatrixSpec
from .schemas import AppRef, parse_app_ref
from .sweep import DEFAULT_MAX_JOBS
from .yamlsrc import Node, to_plain

__all__ = ["DEFAULT_FILENAME", "OutputSpec", "Recipe", "build_recipe", "check_recipe", "value_label"]

TOP_KEYS = (
    "version", "name", "description", "app", "extends", "vars", "matrix", "input",
    "repeat", "output", "budget", "concurrency", "price", "webhook",
)
MATRIX_KEYS = ("include", "exclude", "zip", "filter")
TYPO_KEYS = ("include", "exclude", "zip")  # 'filters:' or 'filer:' may be axes (photo filters): not typos
OUTPUT_KEYS = ("dir", "filename")
BUDGET_KEYS = ("max_usd",)
PRICE_KEYS = ("usd_per_unit", "usd_per_image")
DEFAULT_FILENAME = "{{ job_id }}_{{ short_key }}_{{ image_index }}"
DEFAULT_CONCURRENCY = 8
INVALID_INPUT = "invalid"  # tag of the empty stand-in for a missing or malformed 'input' (already reported)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True, slots=True)
class OutputSpec:
    dir: str | None  # None: out/<name> next to the recipe file
    dir_pos: Position | None
    filename: str
    filename_pos: Position | None


@dataclass(frozen=True, slots=True)
class Recipe:
    """A recipe that passed the shape checks. Paths are as the user wrote them."""

    file: str  # the recipe file as it is shown in messages
    name: str
    description: str
    app: AppRef
    app_pos: Position
    vars: Mapping[str, Any]
    var_origins: Mapping[str, Position]
    matrix: MatrixSpec
    input: Node  # the request template, with positions
    repeat: int
    output: OutputSpec
    budget_microcents: int | None
    budget_pos: Position | None
    concurrency: int
    price_microcents: int | None
    webhook: str | None
    sources: tuple[str, ...] = field(default=())  # every file merged in, in merge order
    declared: frozenset[str] = field(default=frozenset())  # names of vars and matrix keys as written
    matrix_pos: Position | None = None  # the 'matrix' key, when there is one
    repeat_pos: Position | None = None  # the value of 'repeat', when written
    price_key: str | None = None  # which key of 'price' gave price_microcents (usd_per_unit, usd_per_image)
    price_pos: Position | None = None  # that key's value

    @property
    def input_pos(self) -> Position:
        return self.input.key_pos or self.input.pos


def value_label(value: Any) -> str:
    """How an axis value reads in ids, labels and file names."""
    if isinstance(value, dict):
        for key in ("name", "id", "label"):
            if isinstance(value.get(key), str | int | float) and not isinstance(value.get(key), bool):
                return str(value[key])
        blob = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:8]
    if isinstance(value, list):
        return "+".join(value_label(v) for v in value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _entry(check: Checker, node: Node, what: str, axes: Mapping[str, Axis],
           vars_: Mapping[str, Any], only_axes: bool) -> MatrixEntry | None:
    if not node.is_mapping or not node.value:
        check.error(node.pos, f"each {what} entry must be a non-empty mapping of name: value")
        return None
    ok = True
    for key, child in node.items():
        if looks_like_file_axis(child):
            check.error(child.pos, f"{what} values are single values: a set of files is written as a matrix axis "
                                   f"({key}: {{files: ...}}), and {what} names one of its files by its path")
            ok = False
        elif only_axes and key not in axes:
            known = ", ".join(axes) or "none"
            check.error(child.key_pos, f"{what} key {key!r} is not a matrix axis (axes: {known})")
            ok = False
        elif key not in axes and check.identifier(key, child.key_pos, f"{what} key") and key in vars_:
            check.error(child.key_pos, f"{what} key {key!r} shadows the var of the same name")
            ok = False
    if not ok:
        return None
    return MatrixEntry(
        values={k: to_plain(c) for k, c in node.items()},
        origins={k: c.pos for k, c in node.items()},
        labels={k: value_label(to_plain(c)) for k, c in node.items()},
        pos=node.pos,
    )


def _keyword_typo(name: str) -> str | None:
    """The matrix keyword a matrix key looks like a misspelling of, if any."""
    hint = difflib.get_close_matches(name, TYPO_KEYS, n=1, cutoff=0.75)
    return hint[0] if hint and name not in MATRIX_KEYS else None


def _filter(check: Checker, node: Node | None) -> tuple[Condition, ...]:
    """``filter: EXPR`` or a list of them (all must hold); compiled and checked by ``combofilter``."""
    if node is None:
        return ()
    items = node.value if node.is_sequence else [node]
    if node.is_sequence and not items:
        check.error(node.pos, "matrix.filter is an empty list: write an expression, or remove the key")
    out = []
    for item in items:
        if not isinstance(item.value, str):
            check.error(item.pos, f"matrix.filter must be an expression (a string such as 'style != \"noir\"'), "
                                  f"or a list of them, got {kind(item)}")
        elif not item.value.strip():
            check.error(item.pos, "matrix.filter: an expression must not be empty")
        else:
            out.append(Condition(item.value, item.pos))
    return tuple(out)


def _matrix(check: Checker, node: Node | None, vars_: Mapping[str, Any], lister: FileLister,
            max_jobs: int) -> MatrixSpec:
    if check.mapping(node, "matrix") is None or node is None:
        return MatrixSpec()
    axes: dict[str, Axis] = {}
    for name, child in node.items():
        if name in MATRIX_KEYS:
            continue
        hint = _keyword_typo(name)
        if hint:  # 'exlude:' is a typo, not an axis
            check.error(child.key_pos, f"unknown key {name!r} in matrix; did you mean {hint!r}?")
            continue
        if not check.identifier(name, child.key_pos, "matrix axis"):
            continue
        if name in vars_:
            check.error(child.key_pos, f"matrix axis {name!r} shadows the var of the same name")
            continue
        if child.is_mapping:
            found = file_axis(check, name, child, lister, max_jobs)
            if found is not None:
                axes[name] = found
            continue
        if isinstance(child.value, str) and difflib.get_close_matches(name, ("filter",), cutoff=0.75):
            check.error(child.pos, f"matrix axis {name!r} must be a list of values, got a string; did you mean "
                                   "'filter'?")
            continue
        if not child.is_sequence:
            check.error(child.pos, f"matrix axis {name!r} must be a list of values, got {kind(child)}")
            continue
        if not child.value:
            check.error(child.pos, f"matrix axis {name!r} has no values (remove the axis or add values)")
            continue
        values = []
        for item in child.value:
            plain = to_plain(item)
            values.append(AxisValue(plain, item.pos, value_label(plain)))
        axes[name] = Axis(name, tuple(values), child.key_pos or child.pos)
    zips = _zip(check, node.value.get("zip"), axes)
    entries: dict[str, list[MatrixEntry]] = {"include": [], "exclude": []}
    for what in ("include", "exclude"):
        lst = node.value.get(what)
        if lst is None:
            continue
        if not lst.is_sequence:
            check.error(lst.pos, f"matrix.{what} must be a list of mappings, got {kind(lst)}")
            continue
        for item in lst.value:
            entry = _entry(check, item, what, axes, vars_, only_axes=(what == "exclude"))
            if entry is not None:
                entries[what].append(entry)
    return MatrixSpec(tuple(axes.values()), zips, tuple(entries["include"]), tuple(entries["exclude"]),
                      _filter(check, node.value.get("filter")))


def _zip(check: Checker, node: Node | None, axes: Mapping[str, Axis]) -> tuple[tuple[str, ...], ...]:
    if node is None:
        return ()
    if not node.is_sequence:
        check.error(node.pos, "matrix.zip must be a list of groups, each a list of axis names")
        return ()
    groups: list[tuple[str, ...]] = []
    seen: dict[str, Position] = {}
    for group in node.value:
        names = [to_plain(g) for g in group.value] if group.is_sequence else None
        if names is None or len(names) < 2 or not all(isinstance(n, str) for n in names):
            check.error(group.pos, "each matrix.zip group must be a list of two or more axis names")
            continue
        bad = False
        for n, item in zip(names, group.value, strict=True):
            if n not in axes:
                check.error(item.pos, f"matrix.zip names {n!r}, which is not a matrix axis")
                bad = True
            elif n in seen:
                check.error(item.pos, f"axis {n!r} is already zipped (line {seen[n].line})")
                bad = True
            else:
                seen[n] = item.pos
        if bad:
            continue
        lengths = {n: len(axes[n].values) for n in names}
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{n} has {k}" for n, k in lengths.items())
            check.error(group.pos, f"zipped axes must have the same number of values ({detail})")
            continue
        order = [a for a in axes if a in names]  # a group advances at its first axis's place
        groups.append(tuple(order))
    return tuple(groups)


def _output(check: Checker, node: Node | None) -> OutputSpec:
    if check.mapping(node, "output") is None or node is None:
        return OutputSpec(None, None, DEFAULT_FILENAME, None)
    check.keys(node, OUTPUT_KEYS, "output")
    d, f = node.value.get("dir"), node.value.get("filename")
    directory = check.string(d, "output.dir")
    filename = check.string(f, "output.filename")
    if directory is not None and not directory.strip():
        check.error(d.pos if d else None, "output.dir must not be empty")
    elif directory is not None and "\x00" in directory:
        check.error(d.pos if d else None, "output.dir cannot hold a NUL character")
        directory = None
    if filename is not None and not filename.strip():
        check.error(f.pos if f else None, "output.filename must not be empty")
    return OutputSpec(directory, d.pos if d else None, filename or DEFAULT_FILENAME, f.pos if f else None)


def build_recipe(tree: Node, file: str, sources: tuple[str, ...] = (), *, max_jobs: int = DEFAULT_MAX_JOBS,
                 lister: FileLister = list_files) -> Recipe:
    """Check the merged tree and return the recipe, or raise ``RecipeError`` with every problem."""
    recipe, problems = check_recipe(tree, file, sources, max_jobs=max_jobs, lister=lister)
    if problems:
        raise RecipeError(problems)
    return recipe


def _declared(top: Mapping[str, Node]) -> frozenset[str]:
    """Every name the recipe declares, as written (valid or not)."""
    names: set[str] = set()
    for section in ("vars", "matrix"):
        node = top.get(section)
        if node is not None and node.is_mapping:
            names |= set(node.value)
    include = top["matrix"].value.get("include") if "matrix" in top and top["matrix"].is_mapping else None
    if include is not None and include.is_sequence:
        for entry in include.value:
            if entry.is_mapping:
                names |= set(entry.value)
    return frozenset(n for n in names - set(MATRIX_KEYS) if not _keyword_typo(n))


def check_recipe(tree: Node, file: str, sources: tuple[str, ...] = (), *, max_jobs: int = DEFAULT_MAX_JOBS,
                 lister: FileLister = list_files) -> tuple[Recipe, list[Diagnostic]]:
    """The recipe as far as it could be read, and every shape problem found (sorted).

    A file axis's glob is listed by ``lister`` (relative to the file that writes it), at most
    ``max_jobs`` files: past the job limit the sweep would be refused anyway."""
    check = Checker()
    if not tree.is_mapping:
        raise RecipeError([Diagnostic(tree.pos, f"a recipe must be a mapping of keys, got {kind(tree)}")])
    check.keys(tree, TOP_KEYS, "the recipe")
    top: dict[str, Node] = tree.value
    start = tree.pos

    version = top.get("version")
    if version is None:
        check.error(start, "missing required key 'version' (write 'version: 1')")
    elif version.value != 1 or isinstance(version.value, bool):
        shown = str(version.value).lower() if isinstance(version.value, bool) else repr(to_plain(version))
        check.error(version.pos, f"unsupported recipe version {shown}; this tool reads version 1")

    name = check.string(top.get("name"), "name")
    if name is None:
        name = PurePosixPath(file).stem
    elif not _NAME.match(name):
        node = top["name"]
        check.error(node.pos, f"name {name!r} may hold only letters, digits, '.', '_' and '-' "
                              "(it names the output directory)")
    description = check.string(top.get("description"), "description") or ""

    app_node = top.get("app")
    app = AppRef("")
    if app_node is None:
        check.error(start, "missing required key 'app' (for example 'app: klingai/image-o1@0pbaxv40')")
    elif (text := check.string(app_node, "app")) is not None:
        try:
            app = parse_app_ref(text)
        except ValueError as exc:
            check.error(app_node.pos, str(exc))

    vars_node = check.mapping(top.get("vars"), "vars")
    vars_: dict[str, Any] = {}
    var_origins: dict[str, Position] = {}
    if vars_node is not None:
        for key, child in vars_node.items():
            if check.identifier(key, child.key_pos, "var"):
                vars_[key] = to_plain(child)
                var_origins[key] = child.pos

    matrix = _matrix(check, top.get("matrix"), vars_, lister, max_jobs)

    input_node = top.get("input")
    if input_node is None:
        check.error(start, "missing required key 'input' (the request template, e.g. 'input: {prompt: ...}')")
        input_node = Node({}, start, tag=INVALID_INPUT)
    elif not input_node.is_mapping:
        check.error(input_node.pos, f"input must be a mapping of request fields, got {kind(input_node)}")
        input_node = Node({}, input_node.pos, key_pos=input_node.key_pos, tag=INVALID_INPUT)

    repeat = check.integer(top.get("repeat"), "repeat", 1, 1)
    concurrency = check.integer(top.get("concurrency"), "concurrency", 1, DEFAULT_CONCURRENCY)
    output = _output(check, top.get("output"))

    budget_node = check.mapping(top.get("budget"), "budget")
    budget = None
    budget_pos = None
    if budget_node is not None:
        check.keys(budget_node, BUDGET_KEYS, "budget")
        budget = check.usd(budget_node.value.get("max_usd"), "budget.max_usd")
        budget_pos = budget_node.value["max_usd"].pos if "max_usd" in budget_node.value else None

    price_node = check.mapping(top.get("price"), "price")
    price, price_key, price_pos = None, None, None
    if price_node is not None:
        check.keys(price_node, PRICE_KEYS, "price")
        given = [k for k in PRICE_KEYS if k in price_node.value]
        if len(given) > 1:
            check.error(price_node.value[given[1]].key_pos or price_node.pos,
                        "price: give usd_per_unit or usd_per_image, not both")
        elif not given and all(k in PRICE_KEYS for k in price_node.value):  # (an unknown key is said already)
            check.error(price_node.pos, "price needs usd_per_unit (USD per unit the app bills: image, second...)")
        if given:
            price_key, price_pos = given[0], price_node.value[given[0]].pos
            price = check.usd(price_node.value[price_key], f"price.{price_key}")

    webhook = check.string(top.get("webhook"), "webhook")
    if webhook is not None and not webhook.startswith(("http://", "https://")):
        check.error(top["webhook"].pos, "webhook must be an http:// or https:// URL")

    return Recipe(
        file=file, name=name, description=description, app=app,
        app_pos=app_node.pos if app_node else start, vars=vars_, var_origins=var_origins,
        matrix=matrix, input=input_node, repeat=repeat, output=output,
        budget_microcents=budget, budget_pos=budget_pos, concurrency=concurrency,
        price_microcents=price, webhook=webhook, sources=sources or (file,), declared=_declared(top),
        matrix_pos=top["matrix"].key_pos if "matrix" in top else None,
        repeat_pos=top["repeat"].pos if "repeat" in top else None, price_key=price_key, price_pos=price_pos,
    ), sorted(check.problems, key=_order)


def _order(d: Diagnostic) -> tuple[str, int, int]:
    p = d.position
    return (p.file, p.line, p.col) if p else ("", 0, 0)

