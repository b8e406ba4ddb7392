"""The grid: two matrix keys as rows and columns, every other key a facet. Pure."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ...core.errors import UsageError
from .model import AxisInfo, JobEntry, ReportData

__all__ = ["Cell", "Facet", "Layout", "choose_axes", "layout"]

ACROSS_MAX = 6  # thumbnails side by side before a single axis goes down the page instead


@dataclass(frozen=True, slots=True)
class Cell:
    """The jobs of one combination (its repeats), by repeat index."""

    jobs: tuple[JobEntry, ...]

    @property
    def prompt(self) -> str | None:
        """The prompt, when every job of the cell sends the same one."""
        prompts = {job.prompt for job in self.jobs}
        return prompts.pop() if len(prompts) == 1 else None


@dataclass(frozen=True, slots=True)
class Facet:
    index: int
    values: tuple[tuple[str, str | None], ...]  # (facet axis, value label; None: the job has no such key)
    codes: tuple[int, ...]  # index of each value in its axis's ``Layout.values`` (for the page's script)
    cells: tuple[tuple[Cell, ...], ...]  # [row][column]
    jobs: int


@dataclass(frozen=True, slots=True)
class Layout:
    rows: AxisInfo | None
    cols: AxisInfo | None
    row_values: tuple[str | None, ...]  # (None,) when there is no row axis
    col_values: tuple[str | None, ...]
    facet_axes: tuple[AxisInfo, ...]  # keys with more than one value, other than rows and columns
    fixed: tuple[tuple[str, str], ...]  # keys with a single value (shared by every job)
    facets: tuple[Facet, ...]

    def values(self, axis: AxisInfo) -> tuple[str | None, ...]:
        return _values(axis)


def _values(axis: AxisInfo | None) -> tuple[str | None, ...]:
    """An axis's values, with None last when some jobs lack the key; ``(None,)`` for no axis."""
    return (None,) if axis is None else axis.values + ((None,) if axis.partial else ())


def _check(data: ReportData, flag: str, name: str | None) -> None:
    if name is None or data.axis(name) is not None:
        return
    names = ", ".join(a.name for a in data.axes)
    known = f"the axes are: {names}" if names else "this sweep has no matrix axes"
    raise UsageError(f"{flag} {name}: no such axis; {known}")


def choose_axes(data: ReportData, rows: str | None, cols: str | None) -> tuple[str | None, str | None]:
    """Check the chosen axes; default each to the first axis with more than one value not used yet
    (rows first). A single such axis goes across when its cells hold at most ``ACROSS_MAX``
    thumbnails in all, else down."""
    _check(data, "--rows", rows)
    _check(data, "--cols", cols)
    if rows is not None and rows == cols:
        raise UsageError(f"--rows and --cols both name {rows}; choose two different axes")
    varied = [a.name for a in data.axes if a.size > 1]
    if rows is None and cols is None and len(varied) == 1:
        # One axis: across the page when its cells fit side by side, else down it.
        axis = data.axis(varied[0])
        per_cell = max(Counter(job.labels for job in data.jobs).values(), default=1)
        if axis is not None and axis.size * per_cell <= ACROSS_MAX:
            return None, axis.name
    if rows is None:
        rows = next((n for n in varied if n != cols), None)
    if cols is None:
        cols = next((n for n in varied if n != rows), None)
    return rows, cols


def layout(data: ReportData, rows: str | None = None, cols: str | None = None) -> Layout:
    row_name, col_name = choose_axes(data, rows, cols)
    row_axis = data.axis(row_name) if row_name is not None else None
    col_axis = data.axis(col_name) if col_name is not None else None
    others = [a for a in data.axes if a.name not in (row_name, col_name)]
    facet_axes = tuple(a for a in others if a.size > 1)
    fixed = tuple((a.name, a.values[0]) for a in others if a.size == 1 and a.values)

    row_values, col_values = _values(row_axis), _values(col_axis)
    row_index = {v: i for i, v in enumerate(row_values)}
    col_index = {v: i for i, v in enumerate(col_values)}
    facet_index = [{v: i for i, v in enumerate(_values(a))} for a in facet_axes]

    grouped: dict[tuple[int, ...], dict[tuple[int, int], list[JobEntry]]] = {}
    for job in data.jobs:
        codes = tuple(index[job.label(a.name)] for a, index in zip(facet_axes, facet_index, strict=True))
        r = row_index[job.label(row_name)] if row_name is not None else 0
        c = col_index[job.label(col_name)] if col_name is not None else 0
        grouped.setdefault(codes, {}).setdefault((r, c), []).append(job)

    facets = []
    for i, codes in enumerate(sorted(grouped)):
        cells = grouped[codes]
        facets.append(Facet(
            index=i,
            values=tuple((a.name, _values(a)[code]) for a, code in zip(facet_axes, codes, strict=True)),
            codes=codes,
            cells=tuple(
                tuple(Cell(tuple(sorted(cells.get((r, c), ()), key=lambda j: j.repeat_index)))
                      for c in range(len(col_values)))
                for r in range(len(row_values))),
            jobs=sum(len(v) for v in cells.values()),
        ))
    return Layout(rows=row_axis, cols=col_axis, row_values=row_values, col_values=col_values,
                  facet_axes=facet_axes, fixed=fixed, facets=tuple(facets))
