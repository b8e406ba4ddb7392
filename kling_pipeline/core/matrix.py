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

A file axis (``fileaxes``) is an axis like the others once its files are listed. The
``filter`` expressions are data here: ``combofilter`` applies them to what ``expand``
yields, in the template sandbox.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import FrozenInstanceError, dataclass
from typing import Any

from .errors import Position

__all__ = ["Axis", "AxisValue", "Combination", "Condition", "MatrixEntry", "MatrixSpec", "canonical", "check_work",
           "expand", "same_value"]


@dataclass(frozen=True, slots=True)
class AxisValue:
    value: Any
    pos: Position
    label: str  # how the value reads in labels, --only and the plan
    part: str | None = None  # its part of job ids and file names, when not ``slug(label)`` (a file's)


@dataclass(frozen=True, slots=True)
class Axis:
    name: str
    values: tuple[AxisValue, ...]
    pos: Position
    files: str | None = None  # the glob of a file axis (``{files: "refs/*.png"}``), as written


@dataclass(frozen=True, slots=True)
class Condition:
    """One expression of ``matrix.filter``: a combination is kept when it is true."""

    source: str
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
    filter: tuple[Condition, ...] = ()  # applied by the planner (sandboxed Jinja): ``expand`` yields all

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


class Combination:
    """One point of the matrix. ``origins`` says where each value was written.

    Stored compactly: the matrix keys (one tuple shared by every combination of a
    product) and the ``AxisValue`` picked for each (shared with the recipe), so a
    combination costs two small objects, not three dictionaries. ``values``,
    ``origins`` and ``labels`` are built on each access: new dictionaries, in key order.
    """

    __slots__ = ("added", "keys", "picks")

    keys: tuple[str, ...]
    picks: tuple[AxisValue, ...]
    added: bool  # created by an include entry that fit no original combination

    def __init__(self, values: Mapping[str, Any], origins: Mapping[str, Position], labels: Mapping[str, str],
                 added: bool = False) -> None:
        if not values.keys() == origins.keys() == labels.keys():
            raise ValueError("a combination needs a value, an origin and a label for each key")
        keys = tuple(values)
        _set(self, "keys", keys)
        _set(self, "picks", tuple(AxisValue(values[k], origins[k], labels[k]) for k in keys))
        _set(self, "added", added)

    @classmethod
    def of(cls, keys: tuple[str, ...], picks: tuple[AxisValue, ...], added: bool = False) -> Combination:
        """A combination of the values ``picks`` for ``keys`` (as many of each)."""
        combo = _new(cls)
        _set_keys(combo, keys)  # the slots themselves: __setattr__ refuses
        _set_picks(combo, picks)
        _set_added(combo, added)
        return combo

    @property
    def values(self) -> dict[str, Any]:
        return {k: p.value for k, p in zip(self.keys, self.picks, strict=True)}

    @property
    def origins(self) -> dict[str, Position]:
        return {k: p.pos for k, p in zip(self.keys, self.picks, strict=True)}

    @property
    def labels(self) -> dict[str, str]:
        return {k: p.label for k, p in zip(self.keys, self.picks, strict=True)}

    def pick(self, key: str) -> AxisValue | None:
        """The value picked for ``key``, or None when the combination has no such key."""
        for k, p in zip(self.keys, self.picks, strict=True):
            if k == key:
                return p
        return None

    def label(self) -> str:
        """``[subject=mug, style=noir]``; ``[]`` for the single job of an empty matrix."""
        return "[" + ", ".join(f"{k}={p.label}" for k, p in zip(self.keys, self.picks, strict=True)) + "]"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Combination):
            return NotImplemented
        return (self.added == other.added and self.values == other.values and self.origins == other.origins
                and self.labels == other.labels)

    __hash__ = None  # type: ignore[assignment]  # equal by their values, which may be mappings

    def __repr__(self) -> str:
        return (f"Combination(values={self.values!r}, origins={self.origins!r}, labels={self.labels!r}, "
                f"added={self.added!r})")

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (Combination.of, (self.keys, self.picks, self.added))


_new = object.__new__
_set = object.__setattr__
_set_keys, _set_picks, _set_added = (vars(Combination)[name].__set__ for name in ("keys", "picks", "added"))


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
    keys = spec.axis_names  # one tuple, shared by every combination
    factors = _groups(spec)
    if all(len(factor) == 1 for factor in factors):  # no zip: the product's tuples are the picks
        for picks in itertools.product(*(axis.values for axis in spec.axes)):
            combo = _new(Combination)  # Combination.of(keys, picks), inline: this is every combination
            _set_keys(combo, keys)
            _set_picks(combo, picks)
            _set_added(combo, False)
            yield combo
        return
    # A zip group is one factor whose "rows" advance its axes together; the picks are put
    # back in the order the axes were written.
    rows_per_factor = [[tuple(axis.values[i] for axis in factor) for i in range(len(factor[0].values))]
                       for factor in factors]
    flat = [axis.name for factor in factors for axis in factor]
    order = [flat.index(name) for name in keys]
    for picked in itertools.product(*rows_per_factor):
        chosen = [av for row in picked for av in row]
        yield Combination.of(keys, tuple([chosen[i] for i in order]))


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

    def excludes(self, combo: Combination, index: Mapping[str, int], canon: _Canon) -> bool:
        """Whether an entry removes ``combo`` (an original combination: ``index`` gives each axis's pick)."""
        picks = combo.picks
        for keys, table in self.tables.items():
            if tuple([canon(picks[index[k]].value) for k in keys]) in table:
                return True
        if not self.partial:
            return False
        values = combo.values
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
        self._picks: dict[tuple[int, str], AxisValue] = {}
        for i, entry in enumerate(entries):
            keys = tuple(sorted(k for k in entry.values if k in original))
            bucket = self.tables.setdefault(keys, {}).setdefault(tuple(canonical(entry.values[k]) for k in keys),
                                                                 _Bucket())
            bucket.add(i, entry)

    def apply(self, combo: Combination, index: Mapping[str, int], canon: _Canon) -> Combination:
        picks = combo.picks
        fitting = []
        for keys, table in self.tables.items():
            bucket = table.get(tuple([canon(picks[index[k]].value) for k in keys]))
            if bucket is not None:
                bucket.hit = True
                fitting.append(bucket)
        if not fitting:
            return combo
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
        chosen = dict(zip(combo.keys, picks, strict=True))
        # keys land in the order successive dict.update() calls would give: original axes
        # first, then each new key where it is first added; the last entry to write it wins
        for key in sorted(merged, key=lambda k: (k not in index, merged[k][0], merged[k][1])):
            if key not in index:  # an original axis's value fits the entry (it is the same): its own pick stays
                chosen[key] = self.pick(merged[key][2], key)
        return Combination.of(tuple(chosen), tuple(chosen.values()))

    def pick(self, i: int, key: str) -> AxisValue:
        """Entry ``i``'s value for ``key``, one object for every combination it goes into."""
        known = self._picks.get((i, key))
        if known is None:
            entry = self.entries[i]
            known = self._picks[(i, key)] = AxisValue(entry.values[key], entry.origins[key], entry.labels[key])
        return known

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
        index = {name: i for i, name in enumerate(spec.axis_names)}
        for combo in _product(spec):
            if spec.exclude and excluder.excludes(combo, index, canon):
                continue
            yield includer.apply(combo, index, canon) if spec.include else combo
    elif not spec.include:
        yield Combination.of((), ())
    for i in includer.unmatched() if spec.axes else range(len(spec.include)):
        entry = spec.include[i]
        keys = tuple(entry.values)
        yield Combination.of(keys, tuple(includer.pick(i, k) for k in keys), added=True)
