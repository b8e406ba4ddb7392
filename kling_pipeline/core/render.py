"""Jinja2 rendering of request templates, compiled once and applied per job.

Every string in ``input`` is a template rendered in a bounded sandbox (``sandbox``)
with ``StrictUndefined``. A string that is exactly one ``{{ expr }}`` keeps the
expression's native type (``n: "{{ n }}"`` gives an int). Other values pass
through. The context is ``vars`` + the combination + ``recipe`` (the recipe
name) + ``repeat_index``.

A compiled leaf knows where it was written and, when it is a plain name
reference (``{{ subject }}``, ``{{ style.suffix }}``), which context name its
value came from, so an error about the value can point at that value's origin.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import meta

from .errors import Position
from .meter import LimitError, NotDataError, measure, metered, to_json_data
from .sandbox import (
    BoundedEnvironment,
    TemplateProblem,
    compile_expression,
    compile_template,
    make_environment,
    parse,
    parse_expression,
)
from .yamlsrc import Node

__all__ = ["MAX_TEMPLATES", "CompiledTemplate", "RenderError", "TemplateSet", "compile_condition", "make_environment"]

_SINGLE_EXPR = re.compile(r"^\s*\{\{((?:(?!\}\}|\{\{).)*)\}\}\s*$", re.DOTALL)
_DOTTED = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*$")
_MARKERS = ("{{", "{%", "{#")

Path_ = tuple[str | int, ...]


class RenderError(Exception):
    """A template failed for one job. ``path`` is the field inside ``input``. A ``fatal``
    error (a template past its bounds) stops the plan: other jobs would only repeat it."""

    def __init__(self, path: Path_, pos: Position, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.path = path
        self.pos = pos
        self.message = message
        self.fatal = fatal


MAX_TEMPLATES = 1_000  # template strings in one request template


def field_name(path: Path_, prefix: str = "input") -> str:
    """``("image", 0)`` -> ``input.image[0]``."""
    out = prefix
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


Renderer = Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True, slots=True)
class CompiledTemplate:
    """One leaf of the request template."""

    path: Path_
    pos: Position
    source: Any  # the value as written
    kind: str  # "const" | "name" (a plain {{ name.attr }}) | "expr" | "text"
    root: str | None  # for "name": the context name the value comes from
    render: Renderer  # raises RenderError
    names: frozenset[str]  # context names the template reads
    # for "name": the reference, ``(("style", "text"),)``; for a "text" made only of literals and
    # references (rendered without Jinja): its parts in order; else None
    parts: tuple[str | tuple[str, ...], ...] | None = None


def compile_leaf(env: BoundedEnvironment, path: Path_, node_value: Any, pos: Position,
                 prefix: str = "input") -> CompiledTemplate:
    """Compile one value. Raises ``RenderError`` on a template syntax error, or when the
    template is past the sandbox's bounds (too long, nested too deep)."""
    where = field_name(path, prefix)
    if not isinstance(node_value, str) or not any(m in node_value for m in _MARKERS):
        return CompiledTemplate(path, pos, node_value, "const", None, lambda _c: node_value, frozenset())
    try:
        ast = parse(env, node_value)
        names = frozenset(meta.find_undeclared_variables(ast)) - set(env.globals)
        single = _SINGLE_EXPR.match(node_value)
        # Jinja's globals (range, dict, ...) are left to Jinja: the fast paths read the context only.
        fast = not any(n.name in env.globals for n in ast.find_all(jinja2.nodes.Name))
        if fast and single and _DOTTED.match(single.group(1)):
            ref = tuple(single.group(1).strip().split("."))
            lookup = _lookup_fn(env, path, pos, ref, where)
            return CompiledTemplate(path, pos, node_value, "name", ref[0], lookup, names, (ref,))
        if single:
            fn = _native(env, path, pos, compile_expression(env, single.group(1)), where)
            return CompiledTemplate(path, pos, node_value, "expr", None, fn, names)
        parts = _interpolation(node_value) if fast else None
        if parts is not None:
            render = _fast_text(env, path, pos, parts, where)
            return CompiledTemplate(path, pos, node_value, "text", None, render, names, tuple(parts))
        render_text = compile_template(env, ast)
    except jinja2.TemplateSyntaxError as exc:
        line = f" (template line {exc.lineno})" if exc.lineno and exc.lineno > 1 else ""
        raise RenderError(path, pos, f"{where}: template syntax error{line}: {exc.message}") from None
    except TemplateProblem as exc:
        raise RenderError(path, pos, f"{where}: {exc}") from None
    return CompiledTemplate(path, pos, node_value, "text", None, _guarded(path, pos, render_text, where), names)


def compile_condition(env: BoundedEnvironment, source: str, pos: Position, where: str) -> CompiledTemplate:
    """A bare expression (``style != "noir"``, written without ``{{ }}``), bounded and
    checked as a template's ``{{ expression }}`` is; its value is native. Raises
    ``RenderError`` on a syntax error or an expression past the sandbox's bounds."""
    try:
        ast = parse_expression(env, source)
        names = frozenset(meta.find_undeclared_variables(ast)) - set(env.globals)
        fn = _native(env, (), pos, compile_expression(env, ast), where)
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError((), pos, f"{where}: syntax error: {exc.message}") from None
    except TemplateProblem as exc:
        raise RenderError((), pos, f"{where}: {exc}") from None
    return CompiledTemplate((), pos, source, "expr", None, fn, names)


def _native(env: BoundedEnvironment, path: Path_, pos: Position, expr: Callable[..., Any], where: str) -> Renderer:
    """An expression's value, which goes into the request as it is: it must be data."""

    def evaluate(ctx: Mapping[str, Any]) -> Any:
        value = expr(**ctx)
        if isinstance(value, jinja2.Undefined):
            str(value)  # raises the StrictUndefined error with its message
        measure(value, env.global_names, native=True)
        return to_json_data(value)

    return _guarded(path, pos, evaluate, where)


def _guarded(path: Path_, pos: Position, fn: Renderer, where: str) -> Renderer:
    """Run a Jinja render under a fresh meter; turn whatever it raises into a RenderError
    at the template (fatal when the template went past its bounds)."""

    def render(ctx: Mapping[str, Any]) -> Any:
        try:
            return metered(fn, ctx)
        except NotDataError as exc:
            raise RenderError(path, pos, f"{where}: {exc.message}") from None
        except LimitError as exc:
            raise RenderError(path, pos, f"{where}: template error: {exc.message}", fatal=True) from None
        except RecursionError:
            raise RenderError(path, pos, f"{where}: template error: calls nest too deeply (a macro or a recursive "
                                         "loop that does not end?)", fatal=True) from None
        except MemoryError:
            raise RenderError(path, pos, f"{where}: template error: out of memory", fatal=True) from None
        except jinja2.UndefinedError as exc:
            raise RenderError(path, pos, f"{where}: {exc.message}") from None
        except jinja2.TemplateError as exc:
            raise RenderError(path, pos, f"{where}: template error: {exc}") from None
        except Exception as exc:
            raise RenderError(path, pos, f"{where}: {type(exc).__name__}: {exc}") from None

    return render


_NAME_REF = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*\}\}")


def _interpolation(text: str) -> list[str | tuple[str, ...]] | None:
    """Split text made only of literals and ``{{ name.attr }}`` references, else None.

    Such templates (most prompts) render without Jinja's runtime: the same output
    (``str()`` of each value) at a fraction of the cost.
    """
    parts: list[str | tuple[str, ...]] = []
    last = 0
    for m in _NAME_REF.finditer(text):
        parts.append(text[last:m.start()])
        parts.append(tuple(m.group(1).split(".")))
        last = m.end()
    parts.append(text[last:])
    if any(isinstance(p, str) and any(mark in p for mark in (*_MARKERS, "}}", "%}", "#}")) for p in parts):
        return None
    return [p for p in parts if p != ""]


def _missing(path: Path_, pos: Position, ctx: Mapping[str, Any], ref: tuple[str, ...],
             where: str) -> RenderError | None:
    """The error for a reference that does not resolve in ``ctx``, or None when Jinja
    would resolve it some other way (an attribute of the value, e.g. a str method)."""
    if ref[0] not in ctx:
        return RenderError(path, pos, f"{where}: {ref[0]!r} is undefined")
    value = ctx[ref[0]]
    for i, attr in enumerate(ref[1:], 1):
        if type(value) is dict and attr in value:
            value = value[attr]
            continue
        if hasattr(value, attr):
            return None
        return RenderError(path, pos, f"{where}: {'.'.join(ref[:i])!r} has no attribute {attr!r}")
    return None  # pragma: no cover - the lookup would have succeeded


def _lookup_fn(env: BoundedEnvironment, path: Path_, pos: Position, ref: tuple[str, ...],
               where: str) -> Renderer:
    """``{{ a.b.c }}`` read straight from the context when every step is a mapping key
    (what Jinja gives too); anything else is left to Jinja, so results are the same."""
    root, attrs = ref[0], ref[1:]
    slow: list[Renderer] = []

    def other(ctx: Mapping[str, Any]) -> Any:
        """The reference did not resolve through mapping keys: an error, or Jinja's answer."""
        error = _missing(path, pos, ctx, ref, where)
        if error is not None:
            raise error
        if not slow:
            slow.append(_native(env, path, pos, compile_expression(env, ".".join(ref)), where))
        return slow[0](ctx)

    # recipe values are plain: only a dict takes a str key, so ``value[attr]`` is a mapping lookup
    if not attrs:
        def lookup_name(ctx: Mapping[str, Any]) -> Any:
            try:
                return ctx[root]
            except KeyError:
                return other(ctx)

        return lookup_name
    if len(attrs) == 1:
        attr = attrs[0]

        def lookup_attr(ctx: Mapping[str, Any]) -> Any:
            try:
                return ctx[root][attr]
            except (KeyError, TypeError, IndexError):
                return other(ctx)

        return lookup_attr

    def lookup(ctx: Mapping[str, Any]) -> Any:
        try:
            value = ctx[root]
            for a in attrs:
                value = value[a]
            return value
        except (KeyError, TypeError, IndexError):
            return other(ctx)

    return lookup


def _fast_text(env: BoundedEnvironment, path: Path_, pos: Position, parts: list[str | tuple[str, ...]],
               where: str) -> Renderer:
    if all(isinstance(p, str) or len(p) == 1 for p in parts):
        flat = [(True, p) if isinstance(p, str) else (False, p[0]) for p in parts]

        def render_flat(ctx: Mapping[str, Any]) -> str:
            try:
                return "".join([p if lit else str(ctx[p]) for lit, p in flat])
            except KeyError as exc:
                raise RenderError(path, pos, f"{where}: {exc.args[0]!r} is undefined") from None

        return render_flat
    lookups: list[tuple[str, Renderer | None]] = [
        (p, None) if isinstance(p, str) else ("", _lookup_fn(env, path, pos, p, where)) for p in parts
    ]

    def render(ctx: Mapping[str, Any]) -> str:
        return "".join([text if fn is None else str(fn(ctx)) for text, fn in lookups])

    return render


class TemplateSet:
    """The compiled request template: a tree mirroring ``input``.

    ``errors`` holds syntax errors found while compiling (reported once).
    """

    def __init__(self, env: BoundedEnvironment, input_node: Node, prefix: str = "input") -> None:
        self.prefix = prefix
        self.errors: list[RenderError] = []
        self.leaves: dict[Path_, CompiledTemplate] = {}
        self.positions: dict[Path_, Position] = {}  # every node of the template, lists and mappings too
        self._templates = 0
        self._shape = self._compile(env, input_node, ())
        # The common case, a flat mapping of leaves, renders without recursion.
        self._flat = [(k, v) for k, v in self._shape.items() if isinstance(v, CompiledTemplate)]
        if len(self._flat) != len(self._shape):
            self._flat = []

    def _compile(self, env: BoundedEnvironment, node: Node, path: Path_) -> Any:
        self.positions[path] = node.pos
        if node.is_mapping:
            return {k: self._compile(env, child, (*path, k)) for k, child in node.items()}
        if node.is_sequence:
            return [self._compile(env, child, (*path, i)) for i, child in enumerate(node.value)]
        if isinstance(node.value, str) and any(m in node.value for m in _MARKERS):
            self._templates += 1  # each takes a while to compile, and a request needs a few
            if self._templates > MAX_TEMPLATES:
                if self._templates == MAX_TEMPLATES + 1:
                    self.errors.append(RenderError(path, node.pos, f"{field_name(path, self.prefix)}: more than "
                                                                   f"{MAX_TEMPLATES:,} templates in {self.prefix}"))
                self.leaves[path] = CompiledTemplate(path, node.pos, None, "const", None, lambda _c: None,
                                                     frozenset())
                return self.leaves[path]
        try:
            leaf = compile_leaf(env, path, node.value, node.pos, self.prefix)
        except RenderError as exc:
            self.errors.append(exc)
            leaf = CompiledTemplate(path, node.pos, None, "const", None, lambda _c: None, frozenset())
        self.leaves[path] = leaf
        return leaf

    def flat(self) -> list[tuple[str, CompiledTemplate]] | None:
        """The fields and their leaves when the template is a flat mapping of leaves, else None."""
        return list(self._flat) if self._flat else None

    def names(self) -> Iterable[tuple[CompiledTemplate, str]]:
        for leaf in self.leaves.values():
            for name in sorted(leaf.names):
                yield leaf, name

    def render(self, ctx: Mapping[str, Any]) -> dict[str, Any]:
        """Render the whole request. Raises the first ``RenderError``."""
        out = _render(self._shape, ctx)
        assert isinstance(out, dict)
        return out

    def render_all(self, ctx: Mapping[str, Any]) -> tuple[dict[str, Any], list[RenderError]]:
        """Render every field, collecting errors instead of stopping at the first."""
        errors: list[RenderError] = []
        if self._flat or not self._shape:
            try:
                return {k: leaf.render(ctx) for k, leaf in self._flat}, errors
            except RenderError as exc:
                if exc.fatal:  # past its bounds: rendering again would only spend as much again
                    return {}, [exc]
                # else render again, field by field, to collect every error
        out = _render(self._shape, ctx, errors)
        assert isinstance(out, dict)
        return out, errors

    def origin(self, path: Path_, values_origin: Callable[[str], Position | None]) -> Position:
        """Where the value at ``path`` was written: the axis entry / var for a plain
        name reference, else the template. ``path`` may go below a leaf."""
        for cut in range(len(path), 0, -1):
            leaf = self.leaves.get(path[:cut])
            if leaf is not None:
                if leaf.kind == "name" and leaf.root is not None:
                    return values_origin(leaf.root) or leaf.pos
                return leaf.pos
        for cut in range(len(path), -1, -1):  # a list or mapping written in the template
            pos = self.positions.get(path[:cut])
            if pos is not None:
                return pos
        return Position("", 0, 0)  # pragma: no cover - the root is always recorded


def _render(shape: Any, ctx: Mapping[str, Any], errors: list[RenderError] | None = None) -> Any:
    if isinstance(shape, CompiledTemplate):
        if errors is None:
            return shape.render(ctx)
        try:
            return shape.render(ctx)
        except RenderError as exc:
            errors.append(exc)
            return None
    if isinstance(shape, dict):
        return {k: _render(v, ctx, errors) for k, v in shape.items()}
    return [_render(v, ctx, errors) for v in shape]
