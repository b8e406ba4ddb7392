"""Upper bounds of how long a value a call will build, worked out before it runs.

A short template can ask for a long value: ``'x'.center(10**9)``, ``range(99999)|join(s)``,
``'%1000000000s' % x``. The sandbox asks these functions how long the result could be
and refuses the call when that is past the bound, before anything is built. Each
estimate is an upper bound (or close to one: the sandbox measures results too).
``names`` maps the ids of Jinja's globals to their names, for messages about them.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
from typing import Any

import jinja2

from .meter import MAX_ITEMS, length, measure, spend, step, too_big

__all__ = ["FILTERS", "container_method", "format_size", "printf_size", "str_method"]

Names = Mapping[int, str]
Estimate = Callable[[list[Any], Mapping[str, Any], Names], int]


def _arg(args: list[Any], kwargs: Mapping[str, Any], i: int, name: str, default: Any) -> Any:
    return args[i] if len(args) > i else kwargs.get(name, default)


def _number(value: Any) -> int:
    """A width or count as given (0 when it is not a number: the call will say so)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _printed(value: Any, names: Names) -> int:
    """How long ``value`` prints (``StrictUndefined`` raises its own error here)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, jinja2.Undefined):
        return len(str(value))
    return measure(value, names)


_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")


def _widest(numbers: list[str], args: list[Any]) -> int:
    """The largest width or precision a format asks for (``*`` and ``{}`` take an argument)."""
    widest = 0
    for text in numbers:
        if text in ("*", "{"):
            widest = max([widest, *(_number(a) for a in args)])
        elif text:
            widest = max(widest, int(text) if len(text) <= 18 else 10**18)  # not a 5,000-digit int()
    return widest


def printf_size(fmt: str, values: Any, names: Names) -> int:
    """An upper bound of ``len(fmt % values)``."""
    args = list(values.values() if isinstance(values, dict) else values if isinstance(values, tuple) else [values])
    widest_arg = max((_printed(a, names) for a in args), default=0)
    total = len(fmt)
    for match in _PRINTF.finditer(fmt):
        total += widest_arg + _widest([match.group(1) or "", match.group(2) or ""], args)
    return total


def format_size(fmt: str, args: list[Any], kwargs: Mapping[str, Any], names: Names) -> int:
    """An upper bound of ``len(fmt.format(*args, **kwargs))``."""
    values = [*args, *kwargs.values()]
    widest_arg = max((_printed(a, names) for a in values), default=0)
    total = len(fmt)
    for _literal, field, spec, _conversion in string.Formatter().parse(fmt):
        if field is not None:
            numbers = re.findall(r"\d+|\{", spec or "")
            total += widest_arg + _widest(numbers, values)
    return total


def _materialize(args: list[Any], i: int) -> list[Any]:
    """Turn an iterable argument into a list (counting its items) so it can be measured."""
    items = list(args[i])
    if len(items) > MAX_ITEMS:
        raise too_big("a list", len(items))
    spend(len(items))
    args[i] = items
    return items


def _joined(items: list[Any], sep: int, names: Names) -> int:
    """How long ``items`` joined by a separator of ``sep`` characters print."""
    total = sep * max(0, len(items) - 1)  # first: a long separator needs no look at the items
    if total > MAX_ITEMS:
        return total
    step(len(items))
    for item in items:
        total += len(item) if isinstance(item, str | bytes) else _printed(item, names)
        if total > MAX_ITEMS:
            break
    return total


def str_method(name: str, s: str | bytes, args: list[Any], kwargs: Mapping[str, Any],
                names: Names) -> int:
    """An upper bound of the length of ``s.name(*args, **kwargs)``."""
    n = len(s)
    if name in ("center", "ljust", "rjust", "zfill"):
        return max(n, _number(_arg(args, kwargs, 0, "width", 0)))
    if name == "expandtabs":
        tab = "\t" if isinstance(s, str) else b"\t"
        return n + s.count(tab) * max(0, _number(_arg(args, kwargs, 0, "tabsize", 8)))  # type: ignore[arg-type]
    if name == "replace" and args:
        old, new = _arg(args, kwargs, 0, "old", ""), _arg(args, kwargs, 1, "new", "")
        if isinstance(old, str | bytes) and isinstance(new, str | bytes):
            times = s.count(old) if old else n + 1  # type: ignore[arg-type]
            count = _arg(args, kwargs, 2, "count", -1)
            times = min(times, count) if isinstance(count, int) and count >= 0 else times
            return n + times * max(0, len(new) - len(old))
    if name == "join" and args:
        return _joined(_materialize(args, 0), n, names)
    if name in ("format", "format_map") and isinstance(s, str):
        mapping = args[0] if name == "format_map" and args and isinstance(args[0], Mapping) else kwargs
        return format_size(s, args if name == "format" else [], mapping, names)
    if name == "translate" and args and isinstance(args[0], Mapping):
        return n * max([1, *(len(v) for v in args[0].values() if isinstance(v, str | bytes))])
    if name == "encode":
        return 4 * n
    return n


def container_method(name: str, owner: list[Any] | dict[Any, Any], args: list[Any],
                      kwargs: Mapping[str, Any]) -> int:
    """An upper bound of the length of a list or mapping after (or made by) a method call."""
    n = len(owner)
    if name in ("append", "insert", "setdefault"):
        return n + 1
    if name in ("extend", "fromkeys") and args:
        return n + len(_materialize(args, 0))
    if name == "update":
        other = len(args[0]) if args and isinstance(args[0], Mapping | list | tuple) else 0
        return n + other + len(kwargs)
    return n


def _as_text(value: Any, names: Names) -> str:
    _printed(value, names)  # data, and not too long to print
    return str(value)


# Filters, by name. ``values`` are the filter's arguments, the value first (a context or
# environment Jinja passes is left out); an iterable may be turned into a list in place.

def _join(values: list[Any], kwargs: Mapping[str, Any], names: Names) -> int:
    items = _materialize(values, 0) if values else []
    return _joined(items, _printed(_arg(values, kwargs, 1, "d", ""), names), names)


def _center(values: list[Any], kwargs: Mapping[str, Any], names: Names) -> int:
    return max(_printed(values[0], names), _number(_arg(values, kwargs, 1, "width", 80)))


def _indent(values: list[Any], kwargs: Mapping[str, Any], names: Names) -> int:
    text = _as_text(values[0], names)
    width = _arg(values, kwargs, 1, "width", 4)
    return len(text) + (text.count("\n") + 1) * (len(width) if isinstance(width, str) else _number(width))


def _replace(values: list[Any], kwargs: Mapping[str, Any], names: Names) -> int:
    text = _as_text(values[0], names)
    old, new = str(_arg(values, kwargs, 1, "old", "")), str(_arg(values, kwargs, 2, "new", ""))
    return str_method("replace", text, [old, new, _arg(values, kwargs, 3, "count", -1) or -1], {},
                       names)


def _wordwrap(values: list[Any], kwargs: Mapping[str, Any], names: Names) -> int:
    n = _printed(values[0], names)
    wrap = _arg(values, kwargs, 3, "wrapstring", None)
    return n + (n + 1) * (len(wrap) if isinstance(wrap, str) else 2)


def _format(values: list[Any], kwargs: Mapping[str, Any], names: Names) -> int:
    fmt = values[0] if values and isinstance(values[0], str) else ""
    rest = kwargs if kwargs else tuple(values[1:])
    return printf_size(fmt, rest, names)


def _batch(values: list[Any], kwargs: Mapping[str, Any], names: Names) -> int:
    count = _number(_arg(values, kwargs, 1, "linecount", 0))
    if count > MAX_ITEMS:
        raise too_big("the filter 'batch'", count)
    return length(values[0]) + count


def _slice(values: list[Any], kwargs: Mapping[str, Any], names: Names) -> int:
    slices = _number(_arg(values, kwargs, 1, "slices", 0))
    step(min(slices, MAX_ITEMS + 1))  # one list per slice
    return length(values[0]) + slices


def _tojson(values: list[Any], kwargs: Mapping[str, Any], names: Names) -> int:
    indent = _arg(values, kwargs, 1, "indent", None)
    width = len(indent) if isinstance(indent, str) else _number(indent)
    return _printed(values[0], names) * (1 + 4 * width)


def _pprint(values: list[Any], kwargs: Mapping[str, Any], names: Names) -> int:
    return _printed(values[0], names) * 2


def _urlize(values: list[Any], kwargs: Mapping[str, Any], names: Names) -> int:
    n = _printed(values[0], names)
    extra = sum(len(x) for x in (_arg(values, kwargs, 3, "target", None), _arg(values, kwargs, 4, "rel", None))
                if isinstance(x, str))
    return 3 * n + (n // 2 + 1) * (extra + 60)


def _sum(values: list[Any], kwargs: Mapping[str, Any], names: Names) -> int:
    items = _materialize(values, 0) if values else []
    start = _arg(values, kwargs, 2, "start", 0)
    if isinstance(start, list | tuple):  # adding lists copies them again at every item
        total = length(start) + sum(length(x) for x in items)
        spend(total * len(items))
        return total
    return 0


FILTERS: dict[str, Estimate] = {
    "batch": _batch, "center": _center, "format": _format, "indent": _indent, "join": _join, "pprint": _pprint,
    "replace": _replace, "slice": _slice, "sum": _sum, "tojson": _tojson, "urlize": _urlize, "wordwrap": _wordwrap,
}
