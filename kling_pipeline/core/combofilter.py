"""``matrix.filter``: expressions that choose which combinations become jobs.

``filter: EXPR``, or a list of them: a combination is kept when every expression is true
(a list reads "all of these", one rule a line, each with its own position). An expression
is Jinja written without ``{{ }}``, as Ansible's ``when:`` is, over what a template sees
except ``repeat_index`` (the filter chooses combinations, before ``repeat``): the vars,
the combination's keys and ``recipe``. It runs in the template sandbox, with its bounds
and its "data only" rule (``render.compile_condition``), and must give ``true`` or
``false``: anything else is an error at the expression, for that combination.

The filter applies to what ``matrix.expand`` yields (after exclude, include and zip) and
before ``--only``. An expression's answer depends only on the values of the names it
reads, so it is worked out once for each set of those values: over 100,000 combinations
of 3 styles, ``style != "noir"`` is asked 3 times.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .build import Problems
from .errors import Diagnostic
from .matrix import AxisValue, Combination, Condition
from .recipe import Recipe
from .render import CompiledTemplate, RenderError, compile_condition
from .sandbox import BoundedEnvironment

__all__ = ["WHERE", "Filter"]

WHERE = "matrix.filter"
_Verdict = bool | RenderError


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if value is None:
        return "null"
    return "a list" if isinstance(value, list) else "a mapping" if isinstance(value, dict) else "a value"


class _Compiled:
    """One expression, and its answers so far by the values it reads."""

    def __init__(self, leaf: CompiledTemplate) -> None:
        self.leaf = leaf
        self.names = tuple(sorted(leaf.names))
        self.where: dict[tuple[str, ...], tuple[int | None, ...]] = {}  # matrix keys -> index of each name
        self.answers: dict[tuple[int, ...], tuple[_Verdict, tuple[AxisValue | None, ...]]] = {}

    def verdict(self, combo: Combination, base: dict[str, Any]) -> _Verdict:
        keys = combo.keys
        index = self.where.get(keys)
        if index is None:
            index = self.where[keys] = tuple(keys.index(n) if n in keys else None for n in self.names)
        picks = combo.picks
        read = tuple(None if i is None else picks[i] for i in index)
        memo = tuple(id(p) for p in read)
        known = self.answers.get(memo)
        if known is not None:
            return known[0]
        answer = self._ask({**base, **combo.values})
        self.answers[memo] = (answer, read)  # (the picks kept: their ids stay theirs)
        return answer

    def _ask(self, ctx: dict[str, Any]) -> _Verdict:
        leaf = self.leaf
        try:
            value = leaf.render(ctx)
        except RenderError as exc:
            if exc.message.endswith(" is undefined"):
                name = exc.message.rsplit("'", 2)[-2] if exc.message.count("'") >= 2 else "it"
                return RenderError((), exc.pos, f"{exc.message} (where only some combinations have {name!r}, "
                                                f"write '{name} is defined and ...')")
            return exc
        if isinstance(value, bool):
            return value
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        return RenderError((), leaf.pos, f"{WHERE}: gives {shown} ({_kind(value)}), not true or false; compare it "
                                         "(style == \"noir\") or test it (color is defined)")


class Filter:
    """The compiled ``matrix.filter`` of a recipe; ``errors`` holds what could not be compiled."""

    def __init__(self, env: BoundedEnvironment, conditions: Sequence[Condition]) -> None:
        self.errors: list[Diagnostic] = []
        self.compiled: list[_Compiled] = []
        self.removed = 0  # combinations the filter left out
        self.stopped = False  # an expression went past its bounds: the others would only repeat that
        for condition in conditions:
            text = condition.source.strip()
            if text.startswith("{{") and text.endswith("}}"):
                self.errors.append(Diagnostic(condition.pos, f"{WHERE} is an expression, written without {{{{ }}}}: "
                                                             f"{text[2:-2].strip()}"))
                continue
            try:
                self.compiled.append(_Compiled(compile_condition(env, condition.source, condition.pos, WHERE)))
            except RenderError as exc:
                self.errors.append(Diagnostic(exc.pos, exc.message))

    def __bool__(self) -> bool:
        return bool(self.compiled)

    def undefined(self, known: set[str]) -> list[Diagnostic]:
        """The names the expressions read that no combination, var or ``recipe`` gives."""
        out = []
        for c in self.compiled:
            for name in c.names:
                if name in known:
                    continue
                if name == "repeat_index":
                    out.append(Diagnostic(c.leaf.pos, f"{WHERE}: 'repeat_index' is not known to the filter: it "
                                                      "chooses combinations, before repeat"))
                    continue
                hint = difflib.get_close_matches(name, sorted(known), n=1)
                suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
                out.append(Diagnostic(c.leaf.pos, f"{WHERE}: {name!r} is undefined{suggestion} "
                                                  f"(known names: {', '.join(sorted(known))})"))
        return out

    def keep(self, combos: Iterable[Combination], recipe: Recipe, problems: Problems) -> Iterator[Combination]:
        """The combinations every expression keeps; the others are counted in ``removed``,
        and a combination an expression fails on is reported in ``problems`` (and left out)."""
        base = {**recipe.vars, "recipe": recipe.name}
        compiled = self.compiled
        for combo in combos:
            for c in compiled:
                answer = c.verdict(combo, base)
                if answer is not True:
                    break
            else:
                yield combo
                continue
            if not isinstance(answer, RenderError):
                self.removed += 1
                continue
            problems.add(answer.pos, answer.message, combo.label)
            if answer.fatal:
                self.stopped = True
                return
