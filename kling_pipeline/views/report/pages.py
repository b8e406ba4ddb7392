"""Jobs in grid order (see ``grid.Layout.key``) to pages of at most ``PAGE_JOBS`` jobs, as they stream.

A page takes whole rows of a facet (one column block of it) while they fit, then the next facet's,
so small facets share a page and a large one spans several. Only a single row of more than
``PAGE_JOBS`` jobs (many columns times many repeats) is cut inside. Rows without a job in a facet
are left out. Pages are frozen: ``html`` renders them, their ``repr`` is what they show.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .grid import Layout, Place
from .model import JobEntry

__all__ = ["LIST_JOBS", "PAGE_JOBS", "Cell", "GridPage", "ListPage", "Row", "Section", "grid_pages", "list_pages"]

PAGE_JOBS = 200  # jobs on one grid page, at most (each with its n images, n <= 9)
LIST_JOBS = 500  # rows of a problem list page / cards of an "other jobs" page, at most


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
class Row:
    label: str | None  # None: the jobs have no such key ("not set"), or there is no row axis
    cells: tuple[Cell, ...]  # one per column of the section


@dataclass(frozen=True, slots=True)
class Section:
    """One facet's rows on a page (one column block of them)."""

    codes: tuple[int, ...]
    block: int
    facet: tuple[tuple[str, str | None], ...]
    columns: tuple[str | None, ...]
    rows: tuple[Row, ...]
    continued: bool = False  # began on the page before
    more: bool = False  # goes on on the next page

    @property
    def anchor(self) -> str:
        base = "f-" + "-".join(str(c) for c in self.codes) if self.codes else "f"
        return f"{base}-c{self.block}" if self.block else base

    @property
    def jobs(self) -> int:
        return sum(len(cell.jobs) for row in self.rows for cell in row.cells)


@dataclass(frozen=True, slots=True)
class GridPage:
    number: int  # from 1
    sections: tuple[Section, ...]
    last: bool

    @property
    def jobs(self) -> int:
        return sum(s.jobs for s in self.sections)

    @property
    def images(self) -> int:
        return sum(1 for s in self.sections for row in s.rows for cell in row.cells for job in cell.jobs
                   if job.status == "completed" for image in job.images if image.shown)


@dataclass(frozen=True, slots=True)
class ListPage:
    kind: str  # "problems" | "others"
    number: int
    jobs: tuple[JobEntry, ...]
    first: int  # how many come before this page
    last: bool


@dataclass(slots=True)
class _Draft:
    number: int
    rows: list[tuple[Place, list[tuple[int, JobEntry]]]] = field(default_factory=list)  # (column, job)
    jobs: int = 0


def grid_pages(entries: Iterable[tuple[str, JobEntry]], lay: Layout, limit: int = PAGE_JOBS) -> Iterator[GridPage]:
    """``entries``: (``lay.key``, job), sorted; pages in order, each knowing whether it is the last."""
    draft = _Draft(1)
    before: tuple[tuple[int, ...], int] | None = None  # the (facet, block) the last page ended in
    row: list[tuple[int, JobEntry]] = []
    at: Place | None = None

    def add_row() -> Iterator[GridPage]:
        nonlocal draft, before
        assert at is not None
        if draft.jobs and draft.jobs + len(row) > limit:
            yield _page(draft, lay, before, (at.facet, at.block))
            before = (draft.rows[-1][0].facet, draft.rows[-1][0].block)
            draft = _Draft(draft.number + 1)
        draft.rows.append((at, row))
        draft.jobs += len(row)

    for key, entry in entries:
        place = lay.place_of(key)
        if at is not None and ((place.facet, place.block, place.row) != (at.facet, at.block, at.row)
                               or len(row) >= limit):
            yield from add_row()
            row = []
        at = place
        row.append((place.col, entry))
    if at is not None:
        yield from add_row()
    if draft.rows:
        yield _page(draft, lay, before, None)


def _page(draft: _Draft, lay: Layout, before: tuple[tuple[int, ...], int] | None,
          after: tuple[tuple[int, ...], int] | None) -> GridPage:
    """The draft as a page; ``before`` / ``after``: the (facet, block) the pages around it end / begin in."""
    groups: list[tuple[tuple[tuple[int, ...], int], list[tuple[Place, list[tuple[int, JobEntry]]]]]] = []
    for place, jobs in draft.rows:
        skey = (place.facet, place.block)
        if not groups or groups[-1][0] != skey:
            groups.append((skey, []))
        groups[-1][1].append((place, jobs))
    sections = []
    for i, ((codes, block), rows) in enumerate(groups):
        columns = lay.block_columns(block)
        sections.append(Section(
            codes=codes, block=block, facet=lay.facet_values(codes),
            columns=tuple(lay.col_values[c] for c in columns),
            rows=tuple(_row(lay, place, jobs, columns) for place, jobs in rows),
            continued=i == 0 and before == (codes, block),
            more=i == len(groups) - 1 and after == (codes, block),
        ))
    return GridPage(draft.number, tuple(sections), last=after is None)


def _row(lay: Layout, place: Place, jobs: list[tuple[int, JobEntry]], columns: range) -> Row:
    by_col: dict[int, list[JobEntry]] = {}
    for col, job in jobs:
        by_col.setdefault(col, []).append(job)
    label = lay.row_values[place.row] if place.row < len(lay.row_values) else None
    return Row(label, tuple(Cell(tuple(by_col.get(c, ()))) for c in columns))


def list_pages(kind: str, entries: Iterable[JobEntry], limit: int = LIST_JOBS) -> Iterator[ListPage]:
    """``entries`` in chunks of ``limit``, each page knowing whether it is the last."""
    chunk: list[JobEntry] = []
    number = first = 0
    for entry in entries:
        if len(chunk) == limit:
            number += 1
            yield ListPage(kind, number, tuple(chunk), first, last=False)
            first += len(chunk)
            chunk = []
        chunk.append(entry)
    if chunk:
        yield ListPage(kind, number + 1, tuple(chunk), first, last=True)
