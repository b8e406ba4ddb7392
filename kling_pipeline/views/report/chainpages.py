"""The chains view: members in chain order (see ``lineage.chain_key``) to pages of at most
``PAGE_JOBS`` jobs, as they stream.

A chain is a tree: its first job (a job of a first stage), the jobs made from its outputs, and
so on down the stages. A page takes whole chains while they fit; a chain larger than a page
goes on over the next pages, each continuation starting with *stubs* of the jobs above it
(shown in full on the page before). Memory holds one page and the next chain's first
``limit + 1`` jobs. Pages are frozen: ``pipehtml`` renders them, their ``repr`` is what they show.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from .lineage import SEGMENT
from .model import JobEntry

__all__ = ["Card", "ChainItem", "ChainPage", "ChainRow", "Node", "StagedListPage", "chain_pages",
           "staged_list_pages"]


@dataclass(frozen=True, slots=True)
class Card:
    """One job in a chain."""

    stage: str
    own: tuple[tuple[str, str], ...]  # its labels but the upstream one (its place in the chain says that)
    job: JobEntry
    grid: str | None = None  # its place on its stage's grid page (a relative link)
    stub: bool = False  # shown in full on an earlier page
    anchor: str = ""  # its id on the page (a stub has none: the job is on the page before)
    file: str | None = None  # the upstream file it read (relative to the output directory), when recorded
    lost: str | None = None  # a chain's first job of a downstream stage: the upstream job its intent names


@dataclass(frozen=True, slots=True)
class ChainItem:
    """A member as the sorted stream brings it: its chain key and its card."""

    key: str
    card: Card

    @property
    def depth(self) -> int:
        return (len(self.key) - 1) // SEGMENT - 1

    @property
    def root(self) -> str:
        return self.key[:1 + SEGMENT]


@dataclass(frozen=True, slots=True)
class Node:
    card: Card
    kids: tuple[Node, ...] = ()


@dataclass(frozen=True, slots=True)
class ChainRow:
    anchor: str  # the section's id
    root: Node
    orphan: bool  # its first job is of a downstream stage whose upstream job is not known
    jobs: int  # shown in full (stubs not counted)
    continued: bool = False
    more: bool = False

    @property
    def outputs(self) -> int:
        return _outputs(self.root)


def _outputs(node: Node) -> int:
    job = node.card.job
    own = 0 if node.card.stub or job.status != "completed" else sum(1 for i in job.images if i.shown)
    return own + sum(_outputs(kid) for kid in node.kids)


@dataclass(frozen=True, slots=True)
class ChainPage:
    number: int
    rows: tuple[ChainRow, ...]
    last: bool

    @property
    def jobs(self) -> int:
        return sum(r.jobs for r in self.rows)

    @property
    def outputs(self) -> int:
        return sum(r.outputs for r in self.rows)


@dataclass(slots=True)
class _Draft:
    card: Card
    depth: int
    kids: list[_Draft] = field(default_factory=list)

    def freeze(self) -> Node:
        return Node(self.card, tuple(kid.freeze() for kid in self.kids))


class _Row:
    def __init__(self, anchor: str, orphan: bool, stubs: list[_Draft] | None = None) -> None:
        self.anchor, self.orphan = anchor, orphan
        self.stack: list[_Draft] = stubs or []
        self.root: _Draft | None = self.stack[0] if self.stack else None
        self.jobs = 0

    def pop_to(self, depth: int) -> None:
        while self.stack and self.stack[-1].depth >= depth:
            self.stack.pop()

    def add(self, item: ChainItem) -> None:
        draft = _Draft(item.card, item.depth)
        if self.stack:
            self.stack[-1].kids.append(draft)
        elif self.root is None:
            self.root = draft
        else:  # (cannot happen: a chain's key prefixes every key of it) under the first job all the same
            self.root.kids.append(draft)
        self.stack.append(draft)
        self.jobs += 1

    def freeze(self, *, more: bool = False) -> ChainRow:
        assert self.root is not None
        continued = self.root.card.stub
        return ChainRow(self.anchor, self.root.freeze(), self.orphan, self.jobs, continued, more)

    def continued(self) -> _Row:
        """The same chain on the next page: stubs of the jobs above the next one."""
        stubs = [_Draft(replace(d.card, stub=True), d.depth) for d in self.stack]
        for parent, kid in itertools.pairwise(stubs):
            parent.kids.append(kid)
        return _Row(self.anchor, self.orphan, stubs)


def chain_pages(items: Iterable[ChainItem], limit: int) -> Iterator[ChainPage]:
    """``items`` sorted by chain key; pages in order, each knowing whether it is the last."""
    rows: list[ChainRow] = []
    jobs, number = 0, 1

    def flush() -> ChainPage:
        nonlocal rows, jobs, number
        page = ChainPage(number, tuple(rows), last=False)
        rows, jobs, number = [], 0, number + 1
        return page

    for root, group in itertools.groupby(items, key=lambda item: item.root):
        head = list(itertools.islice(group, limit + 1))
        if jobs and jobs + len(head) > limit:
            yield flush()
        row = _Row("c-" + root, root.startswith("1"))
        for item in itertools.chain(head, group):
            row.pop_to(item.depth)
            if jobs >= limit:
                rows.append(row.freeze(more=True))
                yield flush()
                row = row.continued()
            row.add(item)
            jobs += 1
        rows.append(row.freeze())
    if rows:
        yield ChainPage(number, tuple(rows), last=True)


@dataclass(frozen=True, slots=True)
class StagedListPage:
    """A page of a pipeline's problem list (``problems``) or of its jobs not in the plan (``others``):
    each job with its stage's name ("" when unknown)."""

    kind: str
    number: int
    jobs: tuple[tuple[str, JobEntry], ...]
    first: int
    last: bool


def staged_list_pages(kind: str, entries: Iterable[tuple[str, JobEntry]], limit: int) -> Iterator[StagedListPage]:
    chunk: list[tuple[str, JobEntry]] = []
    number = first = 0
    for entry in entries:
        if len(chunk) == limit:
            number += 1
            yield StagedListPage(kind, number, tuple(chunk), first, last=False)
            first += len(chunk)
            chunk = []
        chunk.append(entry)
    if chunk:
        yield StagedListPage(kind, number + 1, tuple(chunk), first, last=True)
