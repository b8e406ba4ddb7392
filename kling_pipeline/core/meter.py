"""What rendering a template may spend: steps, work and sizes, counted as it runs.

A recipe's templates come from files that may be careless or hostile, and rendering is
done for every job before anything is spent, so it must end soon whatever they say.
Each render of a Jinja template runs under a ``Meter`` (the hooks are in ``sandbox``):

* **steps** — loop iterations, calls (functions, methods, macros, filters, tests) and
  items looked at one by one in Python: at most ``MAX_STEPS`` per render;
* **work** — characters and items built, copied or scanned by the C code behind an
  operation: at most ``MAX_WORK`` per render;
* **size** — no string, list or mapping a template builds is longer than ``MAX_ITEMS``;
  no number it prints has more than ``MAX_DIGITS`` digits; data nests at most
  ``MAX_DEPTH`` levels.

A plan adds its renders up (``PLAN_STEPS``, ``PLAN_WORK``): a sweep of many jobs cannot
multiply one render's allowance by its job count. Going past a bound raises
``LimitError``, which planning reports at the template and treats as fatal. A value
that is not data (a function, a generator...) raises ``NotDataError``.

The meter lives in a context variable, so renders in different threads do not share it.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from jinja2.exceptions import SecurityError, TemplateError
from jinja2.runtime import LoopContext
from jinja2.utils import Namespace

__all__ = [
    "MAX_BITS", "MAX_DEPTH", "MAX_DIGITS", "MAX_ITEMS", "MAX_STEPS", "MAX_WORK", "PLAN_STEPS", "PLAN_WORK",
    "LimitError", "Meter", "NotDataError", "PlanMeter", "current", "measure", "metered", "plan_meter", "sized", "spend",
    "step", "to_json_data",
]

MAX_STEPS = 100_000  # loop iterations and calls in one render
MAX_WORK = 10_000_000  # characters and items built or scanned in one render
MAX_ITEMS = 1_000_000  # the longest string, list or mapping a template may build
MAX_BITS = 100_000  # the largest number '*' and '**' may build
MAX_DIGITS = 4_000  # the longest number a template may print (Python prints at most 4,300 digits)
MAX_DEPTH = 64  # lists and mappings inside each other, as in a recipe file
PLAN_STEPS = 10_000_000  # steps of every render of a plan, in all
PLAN_WORK = 1_000_000_000  # work of every render of a plan, in all

_PRINT_BITS = int(MAX_DIGITS * math.log2(10))
_LAZY: tuple[type, ...] = (range, types.GeneratorType, map, filter, zip, reversed, type({}.keys()), type({}.values()),
         type({}.items()), Iterator)


class LimitError(SecurityError):
    """A template went past one of the bounds above."""


class NotDataError(TemplateError):
    """A template rendered something that is not data (``message`` says what)."""


class PlanMeter:
    """What the renders of one plan may still spend, in all."""

    __slots__ = ("steps", "work")

    def __init__(self, steps: int = PLAN_STEPS, work: int = PLAN_WORK) -> None:
        self.steps = steps
        self.work = work


class Meter:
    """What one render may still spend."""

    __slots__ = ("_start_steps", "_start_work", "plan", "steps", "work")

    def __init__(self, plan: PlanMeter | None = None) -> None:
        self.plan = plan
        self.steps = MAX_STEPS if plan is None else min(MAX_STEPS, plan.steps)
        self.work = MAX_WORK if plan is None else min(MAX_WORK, plan.work)
        self._start_steps, self._start_work = self.steps, self.work

    def exceeded(self, what: str) -> LimitError:
        whole_plan = self.plan is not None and (
            self.plan.steps < MAX_STEPS if what == "steps" else self.plan.work < MAX_WORK)
        if what == "steps":
            if whole_plan:
                return LimitError(f"the templates take more than {PLAN_STEPS:,} steps in all over this plan's jobs "
                                  "(loop iterations and calls); simplify the templates or narrow the sweep")
            return LimitError(f"the template takes more than {MAX_STEPS:,} steps to render (loop iterations and "
                              "calls); a request template should need far fewer")
        if whole_plan:
            return LimitError(f"the templates build or scan more than {PLAN_WORK:,} characters and items in all "
                              "over this plan's jobs; simplify the templates or narrow the sweep")
        return LimitError(f"the template builds or scans more than {MAX_WORK:,} characters and items in one render")

    def settle(self) -> None:
        """Count what this render spent against its plan."""
        if self.plan is not None:
            self.plan.steps -= self._start_steps - max(self.steps, 0)
            self.plan.work -= self._start_work - max(self.work, 0)


_CURRENT: ContextVar[Meter | None] = ContextVar("kling_pipeline_meter", default=None)
_PLAN: ContextVar[PlanMeter | None] = ContextVar("kling_pipeline_plan_meter", default=None)
T = TypeVar("T")


@contextmanager
def plan_meter() -> Iterator[PlanMeter]:
    """Count every render made inside the block against one plan-wide allowance."""
    plan = PlanMeter()
    token = _PLAN.set(plan)
    try:
        yield plan
    finally:
        _PLAN.reset(token)


def metered(fn: Callable[[T], Any], arg: T) -> Any:
    """``fn(arg)`` under a fresh meter (counted against the current plan, if any)."""
    meter = Meter(_PLAN.get())
    token = _CURRENT.set(meter)
    try:
        return fn(arg)
    finally:
        _CURRENT.reset(token)
        meter.settle()


current = _CURRENT.get  # the meter of the render under way, or None (hot paths read it once)


def step(n: int = 1) -> None:
    meter = current()
    if meter is not None:
        meter.steps -= n
        if meter.steps < 0:
            raise meter.exceeded("steps")


def spend(n: int) -> None:
    meter = current()
    if meter is not None:
        meter.work -= n
        if meter.work < 0:
            raise meter.exceeded("work")


def too_big(what: str, n: int) -> LimitError:
    return LimitError(f"{what} would build a value of {n:,} items (at most {MAX_ITEMS:,})")


def sized(what: str, n: int) -> None:
    """A value of ``n`` items is about to be built: refuse it when too long, else count it."""
    if n > MAX_ITEMS:
        raise too_big(what, n)
    spend(n)


_SIZED = (str, bytes, list, tuple, dict, set, frozenset)
_SIZED_TYPES = frozenset(_SIZED)


def length(value: Any) -> int:
    """Items in a built value (0 for scalars and lazy values)."""
    if type(value) in _SIZED_TYPES or isinstance(value, _SIZED):
        return len(value)
    return 0


def _describe(value: Any, names: Mapping[int, str]) -> str:
    if id(value) in names:
        return f"the global {names[id(value)]!r} itself"
    if isinstance(value, LoopContext):
        return "the loop object (write loop.index, loop.first...)"
    if isinstance(value, _LAZY):
        return f"a {type(value).__name__} object (add '|list' for its items)"
    if isinstance(value, Namespace):
        return "a namespace object (write ns.name for one of its values)"
    if isinstance(value, set | frozenset):
        return "a set (add '|list' for its items)"
    if callable(value):
        name = getattr(value, "__name__", None) or getattr(value, "name", None)
        return f"a function ({name})" if isinstance(name, str) else "a function"
    return f"a {type(value).__name__} object"


def _not_data(what: str) -> NotDataError:
    return NotDataError(f"renders {what}, not data (text, a number, a boolean, null, a list or a mapping)")


def measure(value: Any, names: Mapping[int, str], *, native: bool = False) -> int:
    """How long ``value`` prints (an estimate), after checking that it is data that
    may be printed: plain scalars, lists, tuples and mappings of them, not too long,
    not too deep. ``native`` values go into a JSON request: mappings need string keys
    and numbers must be finite. Raises ``NotDataError`` or ``LimitError``."""
    total = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            total += len(item) + 2
        elif item is None or isinstance(item, bool):
            total += 5
        elif isinstance(item, int):
            bits = abs(item).bit_length()
            if bits > _PRINT_BITS:
                raise LimitError(f"renders a number of more than {MAX_DIGITS:,} digits")
            total += bits * 3 // 10 + 2
        elif isinstance(item, float):
            if native and not math.isfinite(item):
                raise _not_data(f"{item} (a JSON request has no {'NaN' if math.isnan(item) else 'infinite numbers'})")
            total += 25
        elif isinstance(item, list | tuple | dict):
            if depth > MAX_DEPTH:
                raise LimitError(f"renders lists or mappings nested more than {MAX_DEPTH} levels deep")
            step(len(item) + 1)
            total += 2 + 4 * len(item)
            if isinstance(item, dict):
                for key, child in item.items():
                    if native and not isinstance(key, str):
                        raise _not_data(f"a mapping with the key {key!r} (a JSON request's keys are strings)")
                    stack.append((key, depth + 1))
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
        else:
            raise _not_data(_describe(item, names))
        if total > MAX_ITEMS:
            raise LimitError(f"renders a value of more than {MAX_ITEMS:,} characters")
    spend(total)
    return total


def to_json_data(value: Any) -> Any:
    """A measured native value as plain JSON data: tuples become lists, str subclasses
    (``Markup``) plain strings. Returns ``value`` itself when nothing changes."""
    if type(value) is str or not isinstance(value, str | list | tuple | dict):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return {str(k): to_json_data(v) for k, v in value.items()}
    return [to_json_data(v) for v in value]
