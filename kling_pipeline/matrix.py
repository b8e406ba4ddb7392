"""Matrix expansion: product, exclude, include (GitHub Actions semantics) and zip.

Pure and streaming: ``expand`` yields combinations one at a time, so a
100,000-combination matrix never sits in memory as a list.

Semantics (GitHub Actions' documented rules, plus ``zip``):

* The product of the axes, in the order written; the first axis varies slowest.
  Axes named together in a ``zip`` group advance in lockstep (equal lengths)
  and take the place of the group's first axis in the product.
* ``exclude`` entries remove every combination they match, even partially.
* ``include`` entries are applied after exclusion, in order. An entry's
  key/values are added to every remaining *original* combination where none of
  them would overwrite an original axis value (keys added by an earlier include
  may be overwritten). An entry that fits no original combination becomes a new
  combination of its own; new combinations are never merged into by later
  entries.
* No axes and no include: one combination with no values (one job).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import Position

__all__ = ["Axis", "AxisValue", "Combination", "MatrixEntry", "MatrixSpec", "expand", "same_value"]


@dataclass(frozen=True, slots=True)
class AxisValue:
    value: Any
    pos: Position
    label: str  # how the value reads in ids, labels and file names


@dataclass(frozen=True, slots=True)
class Axis:
    name: str
    values: tuple[AxisValue, ...]
    pos: Position


@dataclass(frozen=True, slots=True)
class MatrixEntry:
    """One ``include`` or ``exclude`` entry: values, with where each was written."""

    values: Mapping[str, Any]
    origins: Mapping[str, Position]
    labels: Mapping[str, str]
    pos: Position


@dataclass(frozen=True, slots=True)
class MatrixSpec:
    axes: tuple[Axis, ...] = ()
    zip: tuple[tuple[str, ...], ...] = ()
    include: tuple[MatrixEntry, ...] = ()
    exclude: tuple[MatrixEntry, ...] = ()

    @property
    def axis_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.axes)

    def size_hint(self) -> int:
        """Number of product combinations before exclude/include."""
        zipped = {name for group in self.zip for name in group[1:]}
        size = 1
        for axis in self.axes:
            if axis.name not in zipped:
                size *= len(axis.values)
        return size if self.axes else 0


@dataclass(frozen=True, slots=True)
class Combination:
    """One point of the matrix. ``origins`` says where each value was written."""

    values: Mapping[str, Any]
    origins: Mapping[str, Position]
    labels: Mapping[str, str]
    added: bool = False  # created by an include entry that fit no original combination

    def label(self) -> str:
        """``[subject=mug, style=noir]``; ``[]`` for the single job of an empty matrix."""
        return "[" + ", ".join(f"{k}={v}" for k, v in self.labels.items()) + "]"


def same_value(a: Any, b: Any) -> bool:
    """Equality that does not confuse ``1``, ``1.0``, ``True`` and ``"1"``: values are
    the same when they are written the same YAML type, as their labels and content
    keys are (``1`` and ``1.0`` read ``v=1`` and ``v=1.0`` and send different JSON)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def _matches(pattern: Any, value: Any) -> bool:
    """Exclude matching: scalars by value; a mapping pattern matches a mapping
    holding at least its keys (recursively), as partial matching does."""
    if isinstance(pattern, dict) and isinstance(value, dict):
        return all(k in value and _matches(v, value[k]) for k, v in pattern.items())
    return same_value(pattern, value)


def _groups(spec: MatrixSpec) -> list[list[Axis]]:
    """Axes as product factors: a zip group is one factor at its first axis's place."""
    by_name = {a.name: a for a in spec.axes}
    group_of: dict[str, tuple[str, ...]] = {n: g for g in spec.zip for n in g}
    factors: list[list[Axis]] = []
    for axis in spec.axes:
        group = group_of.get(axis.name)
        if group is None:
            factors.append([axis])
        elif group[0] == axis.name:
            factors.append([by_name[n] for n in group])
    return factors


def _product(spec: MatrixSpec) -> Iterator[Combination]:
    factors = _groups(spec)
    # Each factor is a list of "rows": tuples of (axis name, AxisValue) advancing together.
    rows_per_factor: list[list[tuple[tuple[str, AxisValue], ...]]] = [
        [
            tuple((axis.name, axis.values[i]) for axis in factor)
            for i in range(len(factor[0].values))
        ]
        for factor in factors
    ]
    order = spec.axis_names
    for picked in itertools.product(*rows_per_factor):
        chosen = {name: av for row in picked for name, av in row}
        yield Combination(
            values={n: chosen[n].value for n in order},
            origins={n: chosen[n].pos for n in order},
            labels={n: chosen[n].label for n in order},
        )


def _fits(entry: MatrixEntry, combo: Combination, original: Sequence[str]) -> bool:
    return all(
        k not in original or same_value(combo.values[k], v) for k, v in entry.values.items()
    )


def expand(spec: MatrixSpec) -> Iterator[Combination]:
    """Yield every combination of the matrix, in order (see module docs)."""
    original = spec.axis_names
    matched = [False] * len(spec.include)
    if spec.axes:
        for combo in _product(spec):
            if any(
                all(_matches(v, combo.values[k]) for k, v in ex.values.items()) for ex in spec.exclude
            ):
                continue
            if not spec.include:
                yield combo
                continue
            values, origins, labels = dict(combo.values), dict(combo.origins), dict(combo.labels)
            for i, entry in enumerate(spec.include):
                if _fits(entry, combo, original):
                    matched[i] = True
                    values.update(entry.values)
                    origins.update(entry.origins)
                    labels.update(entry.labels)
            yield Combination(values, origins, labels)
    elif not spec.include:
        yield Combination({}, {}, {})
    for i, entry in enumerate(spec.include):
        if not matched[i]:
            yield Combination(dict(entry.values), dict(entry.origins), dict(entry.labels), added=True)

