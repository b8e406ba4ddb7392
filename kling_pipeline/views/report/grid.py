"""The grid: two matrix keys as rows and columns, every other key a facet. Pure.

A job's place is (facet, column block, row, column): ``sort_key`` spells it as a string, so that
sorting the jobs (``spool``) lines them up page by page. Columns go in blocks of ``COLS_PER_PAGE``
so that a wide grid never makes a page wider than that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ...core.errors import UsageError
from .model import AxisInfo, JobEntry, ReportSummary

__all__ = ["ACROSS_MAX", "COLS_PER_PAGE", "Layout", "Place", "check_axes", "choose_axes", "layout", "sort_key"]

ACROSS_MAX = 6  # thumbnails side by side before a single axis goes down the page instead
COLS_PER_PAGE = 12  # columns of one page (a wider grid continues on the next pages)
_MAX = 0xFFFFFFFF
_HEX = "%08x"


def _clamp(n: int) -> int:
    return min(max(n, 0), _MAX)


def sort_key(section: int, *numbers: int) -> str:
    """A string that sorts as ``(section, *numbers)`` does (numbers clamped to 0 .. 2**32-1)."""
    return str(section) + (_HEX * len(numbers)) % tuple(_clamp(n) for n in numbers)


@dataclass(frozen=True, slots=True)
class Place:
    facet: tuple[int, ...]  # the index of each facet axis's value
    block: int  # column block
    row: int
    col: int  # within the whole row (not the block)


@dataclass(frozen=True, slots=True)
class Layout:
    rows: AxisInfo | None
    cols: AxisInfo | None
    facet_axes: tuple[AxisInfo, ...]  # keys with more than one value, other than rows and columns
    fixed: tuple[tuple[str, str], ...]  # keys with a single value (shared by every job)

    @property
    def row_values(self) -> tuple[str | None, ...]:
        return _values(self.rows)

    @property
    def col_values(self) -> tuple[str | None, ...]:
        return _values(self.cols)

    @property
    def blocks(self) -> int:
        return -(-len(self.col_values) // COLS_PER_PAGE)

    def block_columns(self, block: int) -> range:
        return range(block * COLS_PER_PAGE, min(len(self.col_values), (block + 1) * COLS_PER_PAGE))

    def place(self, job: JobEntry, index: _Index) -> Place:
        facet = tuple(codes.get(job.label(a.name), len(a.values)) for a, codes in zip(
            self.facet_axes, index.facets, strict=True))
        row = index.rows.get(job.label(self.rows.name), len(self.rows.values)) if self.rows else 0
        col = index.cols.get(job.label(self.cols.name), len(self.cols.values)) if self.cols else 0
        return Place(facet, col // COLS_PER_PAGE, row, col)

    def index(self) -> _Index:
        """Value -> position maps (None, "not set", is last), to place many jobs."""
        return _Index(rows=_codes(self.rows), cols=_codes(self.cols), facets=tuple(_codes(a) for a in self.facet_axes))

    def key(self, job: JobEntry, index: _Index) -> str:
        """The grid's order: facet, column block, row, column, repeat, plan (or manifest) order."""
        p = self.place(job, index)
        return "0" + (_HEX * (len(p.facet) + 5)) % (*p.facet, p.block, p.row, p.col, _clamp(job.repeat_index),
                                                     _clamp(job.order))

    def place_of(self, key: str) -> Place:
        """The place a ``key`` spells."""
        n = len(self.facet_axes)
        numbers = [int(key[i:i + 8], 16) for i in range(1, 8 * (n + 3), 8)]
        return Place(tuple(numbers[:n]), numbers[n], numbers[n + 1], numbers[n + 2])

    def facet_values(self, codes: Sequence[int]) -> tuple[tuple[str, str | None], ...]:
        return tuple((a.name, _values(a)[c] if c < len(_values(a)) else None)
                     for a, c in zip(self.facet_axes, codes, strict=True))


@dataclass(frozen=True, slots=True)
class _Index:
    rows: dict[str | None, int]
    cols: dict[str | None, int]
    facets: tuple[dict[str | None, int], ...]


def _codes(axis: AxisInfo | None) -> dict[str | None, int]:
    return {} if axis is None else {v: i for i, v in enumerate(_values(axis))}


def _values(axis: AxisInfo | None) -> tuple[str | None, ...]:
    """An axis's values, with None last when some jobs lack the key; ``(None,)`` for no axis."""
    return (None,) if axis is None else axis.all_values


def check_axes(names: Sequence[str], rows: str | None, cols: str | None) -> None:
    """Usage errors for ``--rows`` / ``--cols`` naming no axis, or the same one."""
    for flag, name in (("--rows", rows), ("--cols", cols)):
        if name is not None and name not in names:
            known = f"the axes are: {', '.join(names)}" if names else "this sweep has no matrix axes"
            raise UsageError(f"{flag} {name}: no such axis; {known}")
    if rows is not None and rows == cols:
        raise UsageError(f"--rows and --cols both name {rows}; choose two different axes")


def choose_axes(data: ReportSummary, rows: str | None, cols: str | None) -> tuple[str | None, str | None]:
    """Check the chosen axes; default each to the first axis with more than one value not used yet
    (rows first). A single such axis goes across when its cells hold at most ``ACROSS_MAX``
    thumbnails in all, else down."""
    check_axes([a.name for a in data.axes], rows, cols)
    varied = [a.name for a in data.axes if a.size > 1]
    if rows is None and cols is None and len(varied) == 1:
        axis = data.axis(varied[0])
        if axis is not None and axis.size * data.per_cell <= ACROSS_MAX:
            return None, axis.name
    if rows is None:
        rows = next((n for n in varied if n != cols), None)
    if cols is None:
        cols = next((n for n in varied if n != rows), None)
    return rows, cols


def layout(data: ReportSummary, rows: str | None = None, cols: str | None = None) -> Layout:
    row_name, col_name = choose_axes(data, rows, cols)
    others = [a for a in data.axes if a.name not in (row_name, col_name)]
    return Layout(
        rows=data.axis(row_name) if row_name is not None else None,
        cols=data.axis(col_name) if col_name is not None else None,
        facet_axes=tuple(a for a in others if a.size > 1),
        fixed=tuple((a.name, a.values[0]) for a in others if a.size == 1 and a.values),
    )
