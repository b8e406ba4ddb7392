"""The error family. Each failure kind is one class; each carries its context.

Messages say what is wrong, where, and what to do. The CLI maps classes to exit
codes in one place (``cli/_exit.py``); nothing here prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "Diagnostic",
    "KlingError",
    "Position",
    "RecipeError",
    "SchemaDataError",
    "UsageError",
]


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """A place in a recipe file: 1-based line and column."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem found in a recipe, at the YAML node that caused it."""

    position: Position | None
    message: str
    combination: str = ""  # "[subject=mug, style=noir]" for per-job problems

    def __str__(self) -> str:
        where = f"{self.position}: " if self.position is not None else ""
        combo = f"{self.combination} " if self.combination else ""
        return f"{where}{combo}{self.message}"


class KlingError(Exception):
    """Root of every error kling-pipeline raises on purpose. ``invalid``: the command could
    not start or was refused before anything was done (exit 2), not a failure on the way."""

    invalid: ClassVar[bool] = False


class RecipeError(KlingError, ValueError):
    """The recipe (or a file it names) is invalid. Carries every problem found."""

    invalid = True

    def __init__(self, diagnostics: Sequence[Diagnostic], *, total: int | None = None) -> None:
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        self.total = len(self.diagnostics) if total is None else total
        super().__init__(self._summary())

    def _summary(self) -> str:
        lines = [str(d) for d in self.diagnostics]
        rest = self.total - len(self.diagnostics)
        if rest > 0:
            lines.append(f"... and {rest} more error{'s' if rest != 1 else ''}")
        return "\n".join(lines)


class SchemaDataError(KlingError):
    """The bundled schema/price data is missing or malformed (an installation problem)."""


class UsageError(KlingError, ValueError):
    """The command line asks for something that cannot be done (a bad flag value)."""

    invalid = True
