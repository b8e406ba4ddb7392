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
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import Position

__all__ = ["Axis", "AxisValue", "Combination", "MatrixEntry", "MatrixSpec", "canonical", "check_work", "expand",
           "same_value"]


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


def canonical(value: Any) -> Hashable:
    """A hashable form of a plain value: two values have the same form exactly when
    ``same_value`` says they are the same (``1``, ``1.0``, ``True`` and ``"1"`` differ)."""
    if isinstance(value, dict):
        return (dict, tuple(sorted((k, canonical(v)) for k, v in value.items())))
    if isinstance(value, list):
        return (list, tuple(canonical(v) for v in value))
    return (type(value), value)


class _Canon:
    """``canonical`` of combination values, each worked out once (values are shared by
    every combination that holds them)."""

    def __init__(self) -> None:
        self._known: dict[int, tuple[Any, Hashable]] = {}

    def __call__(self, value: Any) -> Hashable:
        known = self._known.get(id(value))
        if known is None or known[0] is not value:
            known = self._known[id(value)] = (value, canonical(value))
        return known[1]


class _Excluder:
    """``exclude`` entries indexed by the axes they name: one lookup per set of axes,
    not one comparison per entry. Entries holding a mapping (matched partially) are
    compared one by one."""

    def __init__(self, entries: Sequence[MatrixEntry]) -> None:
        self.tables: dict[tuple[str, ...], set[tuple[Hashable, ...]]] = {}
        self.partial: list[MatrixEntry] = []
        for ex in entries:
            if any(isinstance(v, dict) for v in ex.values.values()):
                self.partial.append(ex)
                continue
            keys = tuple(sorted(ex.values))
            self.tables.setdefault(keys, set()).add(tuple(canonical(ex.values[k]) for k in keys))

    def excludes(self, values: Mapping[str, Any], canon: _Canon) -> bool:
        for keys, table in self.tables.items():
            if tuple([canon(values[k]) for k in keys]) in table:
                return True
        return any(all(_matches(v, values[k]) for k, v in ex.values.items()) for ex in self.partial)


class _Bucket:
    """The ``include`` entries that fit the same original combinations, merged in order:
    per key, where it is first added (entry, position) and which entry writes it last."""

    def __init__(self) -> None:
        self.indices: list[int] = []
        self.keys: dict[str, tuple[int, int, int, MatrixEntry]] = {}
        self.hit = False

    def add(self, index: int, entry: MatrixEntry) -> None:
        self.indices.append(index)
        for pos, key in enumerate(entry.values):
            first = self.keys.get(key)
            self.keys[key] = (index, pos, index, entry) if first is None else (first[0], first[1], index, entry)


class _Includer:
    """``include`` entries indexed by their values on the original axes (the only ones
    that decide whether an entry fits): a combination finds the entries that fit it
    with one lookup per set of axes, whatever the number of entries."""

    def __init__(self, entries: Sequence[MatrixEntry], original: Sequence[str]) -> None:
        self.entries = entries
        self.tables: dict[tuple[str, ...], dict[tuple[Hashable, ...], _Bucket]] = {}
        for i, entry in enumerate(entries):
            keys = tuple(sorted(k for k in entry.values if k in original))
            bucket = self.tables.setdefault(keys, {}).setdefault(tuple(canonical(entry.values[k]) for k in keys),
                                                                 _Bucket())
            bucket.add(i, entry)

    def apply(self, combo: Combination, canon: _Canon) -> Combination:
        fitting = []
        for keys, table in self.tables.items():
            bucket = table.get(tuple([canon(combo.values[k]) for k in keys]))
            if bucket is not None:
                bucket.hit = True
                fitting.append(bucket)
        if not fitting:
            return Combination(dict(combo.values), dict(combo.origins), dict(combo.labels))
        merged = dict(fitting[0].keys)
        for bucket in fitting[1:]:
            for key, mine in bucket.keys.items():
                had = merged.get(key)
                if had is None:
                    merged[key] = mine
                else:
                    first, pos = min((had[0], had[1]), (mine[0], mine[1]))
                    last, entry = (mine[2], mine[3]) if mine[2] > had[2] else (had[2], had[3])
                    merged[key] = (first, pos, last, entry)
        values, origins, labels = dict(combo.values), dict(combo.origins), dict(combo.labels)
        # keys land in the order successive dict.update() calls would give: original axes
        # first, then each new key where it is first added; the last entry to write it wins
        for key in sorted(merged, key=lambda k: (k not in values, merged[k][0], merged[k][1])):
            entry = merged[key][3]
            values[key], origins[key], labels[key] = entry.values[key], entry.origins[key], entry.labels[key]
        return Combination(values, origins, labels)

    def unmatched(self) -> list[int]:
        return sorted(i for table in self.tables.values() for b in table.values() if not b.hit for i in b.indices)


def check_work(spec: MatrixSpec) -> tuple[int, int]:
    """Lookups per combination for ``exclude`` and ``include`` (one per set of axes the
    entries name, plus one per mapping-holding exclude entry)."""
    excluded = _Excluder(spec.exclude)
    original = spec.axis_names
    groups = {tuple(sorted(k for k in e.values if k in original)) for e in spec.include}
    return len(excluded.tables) + len(excluded.partial), len(groups)


def expand(spec: MatrixSpec) -> Iterator[Combination]:
    """Yield every combination of the matrix, in order (see module docs)."""
    includer = _Includer(spec.include, spec.axis_names)
    if spec.axes:
        excluder = _Excluder(spec.exclude)
        canon = _Canon()
        for combo in _product(spec):
            if spec.exclude and excluder.excludes(combo.values, canon):
                continue
            yield includer.apply(combo, canon) if spec.include else combo
    elif not spec.include:
        yield Combination({}, {}, {})
    for i in includer.unmatched() if spec.axes else range(len(spec.include)):
        entry = spec.include[i]
        yield Combination(dict(entry.values), dict(entry.origins), dict(entry.labels), added=True)
