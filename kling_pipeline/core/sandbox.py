"""The template sandbox: Jinja's ``SandboxedEnvironment``, bounded in time and memory.

Jinja's sandbox keeps templates away from Python internals; this one also keeps them
from running for ever or filling the memory (the counting is in ``meter``):

* every loop iteration ticks the meter: templates are instrumented after parsing, so a
  loop costs steps even when its body calls nothing (``{% for %}{% endfor %}``), and
  its body's literal text is counted as it is written out;
* every call (function, method, macro, filter, test) is a step; calls that can make a
  long value from short arguments (``center``, ``join``, ``replace``, ``format``,
  ``%``, ``*``, ``batch``...) have their result's length estimated *before* they run;
* ``~`` and comparisons and slices of long values are counted by what they copy or scan;
* every ``{{ output }}`` must be data (not a function, a generator or a namespace),
  is measured before it is printed;
* a template may nest ``MAX_NESTING`` levels and be ``MAX_TEMPLATE_CHARS`` long;
* ``lipsum()`` and ``|random`` are refused: they make a different request on every
  run, so a job's content key would change and a re-run would pay for it again.

``compile_template`` and ``compile_expression`` turn source into something to call;
the caller runs it under ``meter.metered``. Problems found while compiling are raised
as ``TemplateProblem``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jinja2
from jinja2 import nodes, pass_context
from jinja2.environment import TemplateExpression
from jinja2.parser import Parser
from jinja2.runtime import Context, Macro
from jinja2.sandbox import SandboxedEnvironment
from jinja2.visitor import NodeTransformer

from .estimates import FILTERS, container_method, printf_size, str_method
from .meter import MAX_BITS, LimitError, length, measure, sized, spend, step

__all__ = ["MAX_NESTING", "MAX_TEMPLATE_CHARS", "BoundedEnvironment", "TemplateProblem", "compile_expression",
           "compile_template", "make_environment", "parse", "parse_expression"]

MAX_NESTING = 50  # blocks, brackets, filters and operators inside each other
MAX_TEMPLATE_CHARS = 100_000  # a request template's source (a prompt is at most 2,500 characters)
MACRO_STEPS = 5  # a macro call costs about as much as five loop iterations


class TemplateProblem(Exception):
    """A template cannot be compiled within the bounds (the message says why)."""


# Hooks the instrumented templates call as filters, under names a template cannot write.
# They take the context so that Jinja does not run them early, while compiling.
_TICK, _SCAN, _CONCAT = "kling tick", "kling scan", "kling concat"


@pass_context
def _tick(_context: Context, cost: int) -> bool:
    """One loop iteration that writes ``cost - 1`` characters of literal text."""
    step()
    spend(cost)
    return True


@pass_context
def _scan(_context: Context, value: Any) -> Any:
    """A value compared or sliced: the work is its length."""
    spend(length(value))
    return value


@pass_context
def _concat(context: Context, parts: tuple[Any, ...]) -> str:
    """``a ~ b ~ c``, measured first."""
    env = context.environment
    assert isinstance(env, BoundedEnvironment)
    total = sum(len(p) if isinstance(p, str) else 0 if isinstance(p, jinja2.Undefined)
                else measure(p, env.global_names) for p in parts)
    sized("'~'", total)
    return "".join([str(p) for p in parts])


class _Instrument(NodeTransformer):
    """Rewrites a parsed template so that loops tick and ``~``, comparisons and slices
    are counted (see the hooks above)."""

    def _hook(self, name: str, value: nodes.Expr, lineno: int) -> nodes.Filter:
        return nodes.Filter(value, name, [], [], None, None, lineno=lineno)

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        text = 0
        todo: list[nodes.Node] = list(node.body)
        while todo:  # the literal text the body writes, nested loops and macros aside (they count their own)
            child = todo.pop()
            if isinstance(child, nodes.TemplateData):
                text += len(child.data)
            elif not isinstance(child, nodes.For | nodes.Macro | nodes.CallBlock):
                todo.extend(child.iter_child_nodes())
        node.body.insert(0, nodes.ExprStmt(self._hook(_TICK, nodes.Const(1 + text), node.lineno), lineno=node.lineno))
        if node.test is not None:  # items the loop's 'if' leaves out are steps too
            node.test = nodes.And(self._hook(_TICK, nodes.Const(1), node.lineno), node.test, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return self._hook(_CONCAT, nodes.Tuple(list(node.nodes), "load", lineno=node.lineno), node.lineno)

    def _scanned(self, expr: nodes.Expr) -> nodes.Expr:
        return expr if isinstance(expr, nodes.Const) else self._hook(_SCAN, expr, expr.lineno)

    def visit_Compare(self, node: nodes.Compare) -> nodes.Node:
        self.generic_visit(node)
        node.expr = self._scanned(node.expr)
        for operand in node.ops:
            operand.expr = self._scanned(operand.expr)
        return node

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Node:
        self.generic_visit(node)
        return self._hook(_SCAN, node, node.lineno) if isinstance(node.arg, nodes.Slice) else node


def _refused(message: str) -> Callable[..., Any]:
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise jinja2.TemplateError(message)

    return refuse


_CHANGES_EVERY_RUN = ("a different request on every run: the job's content key would change and a re-run "
                      "would pay for it again")
# filters that turn their input into text (a list of long strings prints longer than it is)
_TEXT_FILTERS = frozenset({
    "capitalize", "center", "e", "escape", "forceescape", "format", "indent", "lower", "replace", "string",
    "striptags", "title", "trim", "truncate", "upper", "urlencode", "urlize", "wordcount", "wordwrap", "pprint",
    "tojson", "xmlattr",
})


class BoundedEnvironment(SandboxedEnvironment):
    """The sandbox with bounds (see the module docs) and one change: ``style.items`` on
    a mapping that has the key ``items`` gives that value, not the dict method."""

    intercepted_binops = frozenset(["*", "**", "+", "%"])

    def __init__(self) -> None:
        super().__init__(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True,
                         finalize=self._finalize)
        self.globals["lipsum"] = _refused(f"lipsum() writes {_CHANGES_EVERY_RUN}; write the text in the recipe")
        self.global_names: dict[int, str] = {id(v): k for k, v in self.globals.items()}
        self.filters = {name: self._bounded_filter(name, fn) for name, fn in self.filters.items()}
        self.filters["random"] = _refused(f"the 'random' filter makes {_CHANGES_EVERY_RUN}; use a matrix axis "
                                          "(or repeat) to vary the jobs")
        self.filters.update({_TICK: _tick, _SCAN: _scan, _CONCAT: _concat})
        self.tests = {name: self._bounded_test(test) for name, test in self.tests.items()}

    def _finalize(self, value: Any) -> Any:
        """Every ``{{ output }}``: data, measured before it is printed."""
        if type(value) is str:
            spend(len(value))
        elif not isinstance(value, jinja2.Undefined):  # StrictUndefined raises its own error when printed
            measure(value, self.global_names)
        return value

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        step()
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | bytes | list | tuple) and isinstance(times, int):
                    sized("'*'", len(seq) * times)
            if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_BITS:
                raise LimitError(f"'*' would build a number of about {left.bit_length() + right.bit_length():,} "
                                 f"bits (at most {MAX_BITS:,})")
        elif operator == "+":
            if isinstance(left, str | bytes | list | tuple) and isinstance(right, str | bytes | list | tuple):
                sized("'+'", len(left) + len(right))
        elif operator == "%":
            if isinstance(left, str):
                sized("'%'", printf_size(left, right, self.global_names))
        elif (isinstance(left, int) and isinstance(right, int)
              and right * max(abs(left).bit_length() - 1, 0) > MAX_BITS):
            raise LimitError(f"'**' would build a number of about {right * (abs(left).bit_length() - 1):,} bits "
                             f"(at most {MAX_BITS:,})")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if type(__obj) is Macro:
            step(MACRO_STEPS)
        else:
            step()
            owner = getattr(__obj, "__self__", None)
            if owner is None and (wrapped := getattr(__obj, "__wrapped__", None)) is not None:
                owner = getattr(wrapped, "__self__", None)  # str.format, as the sandbox wraps it
            if isinstance(owner, str | bytes | list | dict):
                name = getattr(__obj, "__name__", "")
                arguments = list(args)
                if isinstance(owner, str | bytes):
                    sized(f"'{name}'", str_method(name, owner, arguments, kwargs, __self.global_names))
                else:
                    sized(f"'{name}'", container_method(name, owner, arguments, kwargs))
                args = tuple(arguments)
            elif args:
                spend(sum([length(a) for a in args]))
        result = super().call(__context, __obj, *args, **kwargs)
        n = length(result)
        if n:
            sized(f"calling {getattr(__obj, '__name__', None) or getattr(__obj, 'name', 'a function')}", n)
        return result

    def _bounded_filter(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        skip = 1 if getattr(fn, "jinja_pass_arg", None) is not None else 0  # context or environment first
        what = f"the filter {name!r}"
        estimate = FILTERS.get(name)
        text = name in _TEXT_FILTERS

        @functools.wraps(fn)
        def bounded(*args: Any, **kwargs: Any) -> Any:
            step()
            if estimate is not None:
                values = list(args[skip:])
                sized(what, estimate(values, kwargs, self.global_names))
                args = (*args[:skip], *values)
            elif text and len(args) > skip and not isinstance(args[skip], str | jinja2.Undefined):
                measure(args[skip], self.global_names)
            else:
                spend(sum([length(v) for v in args[skip:]]))
            result = fn(*args, **kwargs)
            n = length(result)
            if n:
                sized(what, n)
            return result

        return bounded

    def _bounded_test(self, fn: Any) -> Callable[..., Any]:
        @functools.wraps(fn)
        def bounded(*args: Any, **kwargs: Any) -> Any:
            step()
            spend(sum(length(a) for a in args))
            return fn(*args, **kwargs)

        return bounded

def make_environment() -> BoundedEnvironment:
    return BoundedEnvironment()


def _nesting(node: nodes.Node) -> int:
    """How deep the tree goes (without recursion: a deep tree is what it looks for)."""
    deepest = 0
    todo = [(node, 1)]
    while todo:
        current, depth = todo.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_NESTING:
            break
        todo.extend((child, depth + 1) for child in current.iter_child_nodes())
    return deepest


_TOO_DEEP = (f"the template nests more than {MAX_NESTING} levels deep (blocks, brackets, filters or operators "
             "inside each other); simplify it")


def parse(env: BoundedEnvironment, source: str) -> nodes.Template:
    """Parse a template, refusing one that is too long or too deep. Raises
    ``jinja2.TemplateSyntaxError`` or ``TemplateProblem``."""
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateProblem(f"the template is {len(source):,} characters long (at most {MAX_TEMPLATE_CHARS:,})")
    try:
        ast = env.parse(source)
    except RecursionError:
        raise TemplateProblem(_TOO_DEEP) from None
    except (ValueError, OverflowError, MemoryError) as exc:  # e.g. a number too long to read
        raise TemplateProblem(f"the template cannot be read: {exc}") from None
    if _nesting(ast) > MAX_NESTING:
        raise TemplateProblem(_TOO_DEEP)
    return ast


def _compile(env: BoundedEnvironment, ast: nodes.Template) -> jinja2.Template:
    ast = _Instrument().visit(ast)
    ast.set_environment(env)
    try:
        return env.from_string(ast)
    except (RecursionError, SyntaxError, MemoryError):  # Python's own limits on the generated code
        raise TemplateProblem(_TOO_DEEP) from None


def compile_template(env: BoundedEnvironment, ast: nodes.Template) -> Callable[[Mapping[str, Any]], str]:
    """A parsed template as a function of its context, instrumented."""
    template = _compile(env, ast)

    def render_text(ctx: Mapping[str, Any]) -> str:
        # Template.render() without its error rewriting; the context gets Jinja's
        # globals (range, dict, ...) as render() gives them.
        return "".join(template.root_render_func(template.new_context(dict(ctx))))

    return render_text


def parse_expression(env: BoundedEnvironment, source: str) -> nodes.Template:
    """One expression (``count + 1``), parsed as the template ``{% set result = ... %}``,
    refused when too long or too deep. Raises ``jinja2.TemplateSyntaxError`` or ``TemplateProblem``."""
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateProblem(f"the expression is {len(source):,} characters long (at most {MAX_TEMPLATE_CHARS:,})")
    parser = Parser(env, source, state="variable")
    try:
        expr = parser.parse_expression()
    except RecursionError:
        raise TemplateProblem(_TOO_DEEP) from None
    except (ValueError, OverflowError, MemoryError) as exc:  # e.g. a number too long to read
        raise TemplateProblem(f"the expression cannot be read: {exc}") from None
    if not parser.stream.eos:
        raise jinja2.TemplateSyntaxError("chunk after expression", parser.stream.current.lineno, None, None)
    ast = nodes.Template([nodes.Assign(nodes.Name("result", "store"), expr, lineno=1)], lineno=1)
    if _nesting(ast) > MAX_NESTING:
        raise TemplateProblem(_TOO_DEEP)
    ast.set_environment(env)
    return ast


def compile_expression(env: BoundedEnvironment, source: str | nodes.Template) -> Callable[..., Any]:
    """One expression (its source, or ``parse_expression``'s tree) as a function of its
    context: its value, native."""
    ast = parse_expression(env, source) if isinstance(source, str) else source
    return TemplateExpression(_compile(env, ast), False)
