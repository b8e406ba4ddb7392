"""Where each member of a pipeline's chains is shown, and the links between them.

Every member (see ``lineage``) is on one grid page of its stage and on one chains page; each has
an anchor there, ``j-<order>`` (its plan order, else the manifest line that first names it: it
stays the same when other jobs are added). ``Places`` keeps, as numbers, each member's two page
numbers (filled in by a first pass over the sorted pages, before any page is written), its
downstream members (``kids``, in compact arrays), and each member's job id in a file on disk
(``Names``), so that any page can link any job to the job it was made from and to the jobs made
from its outputs. Memory: about 30 bytes a member.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .html import page_name
from .lineage import Lineage

__all__ = ["KIDS_SHOWN", "JobLink", "JobLinks", "Names", "Places", "anchor"]

KIDS_SHOWN = 8  # downstream jobs linked from one job (the others: on its chain)


def anchor(order: int) -> str:
    """A job's id on its grid page and on its chains page."""
    return f"j-{order}"


@dataclass(frozen=True, slots=True)
class JobLink:
    stage: str
    job_id: str
    href: str  # from any page of the report's directory


@dataclass(frozen=True, slots=True)
class JobLinks:
    """One job's lineage, as its grid page shows it."""

    anchor: str  # its id on the page
    chain: str  # its place on the chains page
    up: JobLink | None  # the job whose output it was made from
    lost: str | None  # ... or that job's id, when the manifest does not have it
    file: str | None  # the upstream file it read (relative to the output directory), when recorded
    kids: tuple[JobLink, ...]  # the jobs made from its outputs (at most ``KIDS_SHOWN``)
    more: int  # and how many more (on its chain)


class Names:
    """Each member's job id, on disk: a file of the ids one after the other, and two arrays."""

    def __init__(self, path: Path, members: int) -> None:
        self.path = path
        self._at = array("Q", [0]) * members
        self._len = array("I", [0]) * members
        self._out = path.open("wb")
        self._size = 0
        self._fd: int | None = None

    def put(self, member: int, text: str) -> None:
        data = text.encode("utf-8", "surrogatepass")
        self._out.write(data)
        self._at[member], self._len[member] = self._size, len(data)
        self._size += len(data)

    def get(self, member: int) -> str:
        if self._fd is None:
            self._out.close()
            self._fd = os.open(self.path, os.O_RDONLY)
        return os.pread(self._fd, self._len[member], self._at[member]).decode("utf-8", "surrogatepass")

    def close(self) -> None:
        self._out.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Places:
    """Each member's grid page and chains page (``grid_page``, ``chain_page``: 0 until known), and
    the links of a member's job."""

    def __init__(self, lineage: Lineage, kinds: Sequence[str], names: Names) -> None:
        self.lineage, self.kinds, self.names = lineage, kinds, names
        members = lineage.members
        self.grid_page = array("I", [0]) * members
        self.chain_page = array("I", [0]) * members
        self._start, self._kids = _children(lineage)

    def anchor(self, member: int) -> str:
        return anchor(self.lineage.order(member))

    def grid_href(self, member: int) -> str | None:
        number = self.grid_page[member]
        kind = self.kinds[self.lineage.member_stage(member)]
        return f"./{page_name(kind, number)}#{self.anchor(member)}" if number else None

    def chain_href(self, member: int) -> str:
        return f"./{page_name('chains', self.chain_page[member])}#{self.anchor(member)}"

    def job(self, member: int) -> JobLink | None:
        href = self.grid_href(member)
        stage = self.lineage.stages[self.lineage.member_stage(member)].name
        return JobLink(stage, self.names.get(member), href) if href is not None else None

    def links(self, member: int, lost: str | None, file: str | None) -> JobLinks:
        up = self.lineage.up(member)
        start, end = self._start[member], self._start[member + 1]
        kids = (self.job(self._kids[i]) for i in range(start, min(end, start + KIDS_SHOWN)))
        return JobLinks(anchor=self.anchor(member), chain=self.chain_href(member), up=self.job(up) if up >= 0 else None,
                        lost=lost if up < 0 else None, file=file, kids=tuple(k for k in kids if k is not None),
                        more=max(0, end - start - KIDS_SHOWN))


def _children(lineage: Lineage) -> tuple[array[int], array[int]]:
    """Each member's downstream members, as ``kids[start[m]:start[m + 1]]``, by stage then order."""
    members = lineage.members
    up = array("i", (lineage.up(m) for m in range(members)))
    start = array("I", [0]) * (members + 1)
    for u in up:
        if u >= 0:
            start[u + 1] += 1
    for m in range(members):
        start[m + 1] += start[m]
    kids, fill = array("I", [0]) * start[members], array("I", start)
    for m, u in enumerate(up):
        if u >= 0:
            kids[fill[u]] = m
            fill[u] += 1
    for m in range(members):
        a, b = start[m], start[m + 1]
        if b - a > 1:
            kids[a:b] = array("I", sorted(kids[a:b], key=lambda k: (lineage.member_stage(k), lineage.order(k))))
    return start, kids
