"""Writing a pipeline's report: the index, the chains pages, each stage's grid pages, the lists.

1. ``pipecollect`` streams the manifest (and the plan) into member lines on disk, with each
   stage's totals and axes;
2. each stage gets its grid layout (``--rows`` / ``--cols`` apply to the stages that have the axis;
   an axis no stage has stops here, before anything is written);
3. the members get their thumbnails and are spooled (``spool``: sorted on disk) into the stages'
   grids (section 0), the chains (1) and the problem list (2); the jobs listed apart into 3; a
   second, light spool holds only the members' numbers in grid and chain order;
4. a first pass over the light spool pages the grids and the chains without rendering them, so
   that each member's two pages are known (``links.Places``) before any page links to them;
5. the pages are written, each only when its digest changed (``pagefiles``), as in a one-stage
   report; then the index.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path

from ...core.planning import Plan
from .chainpages import Card, ChainItem, ChainPage, StagedListPage, chain_pages, staged_list_pages
from .grid import Layout, check_axes, layout, sort_key
from .html import PageLink, page_name
from .links import JobLinks, Names, Places
from .model import PROBLEM_STATUSES, JobEntry, entry_line, parse_entry
from .pagefiles import PageFiles
from .pages import GridPage, grid_pages
from .pipecollect import PipelineData, collect_pipeline, parse_upstream, with_thumbnails
from .pipehtml import ChainLink, PipelineRenderer, StageRenderer, StageView, stage_kind
from .source import ManifestSource
from .spool import Spool
from .thumbs import Thumbnails, ThumbStats

__all__ = ["stage_layouts", "write_pipeline"]

_STAGE = "%04x"  # a stage's number in a grid section's sort key
_SKIP = 1 + len(_STAGE % 0)  # a grid section's key: "0", the stage, the grid's own key
_BLANK = JobEntry("", (), 0, "not_run", "none")  # what the first pass pages (it counts jobs only)


def stage_layouts(data: PipelineData, rows: str | None, cols: str | None) -> list[Layout]:
    """Each stage's grid; ``rows`` / ``cols`` must name an axis of some stage."""
    names = list(dict.fromkeys(a.name for st in data.stages for a in st.summary.axes))
    check_axes(names, rows, cols)
    out = []
    for st in data.stages:
        have = {a.name for a in st.summary.axes}
        out.append(layout(st.summary, rows if rows in have else None, cols if cols in have else None))
    return out


def write_pipeline(out: Path, plan: Plan | None, source: ManifestSource, axes: tuple[str | None, str | None],
                   index: Path, files: PageFiles, work: Path, bounds: tuple[int, int],
                   mkdir: Callable[[Path], None]) -> tuple[PipelineData, ThumbStats]:
    """Collect, lay out and write every page of a pipeline's report, and its index."""
    data = collect_pipeline(out, plan, source, work)
    grids = stage_layouts(data, *axes)
    mkdir(files.directory)
    names = Names(work / "names.bin", data.lineage.members)
    try:
        return data, _Pipeline(data, grids, index, files, work, bounds, names).write()
    finally:
        names.close()


class _Pipeline:
    def __init__(self, data: PipelineData, grids: list[Layout], index: Path, files: PageFiles, work: Path,
                 bounds: tuple[int, int], names: Names) -> None:
        self.data, self.grids, self.index, self.files, self.work = data, grids, index, files, work
        self.page_jobs, self.list_jobs = bounds
        directory = files.directory
        self.renderer = PipelineRenderer(data.summary, [st.info.name for st in data.stages], index, directory,
                                         self.page_jobs)
        title = data.summary.title
        self.stage_renderers = [
            StageRenderer(replace(st.summary, title=f"{title} — stage {st.info.name}"), grid, index, directory,
                          self.page_jobs, stage_kind(st.number, st.info.name))
            for st, grid in zip(data.stages, grids, strict=True)]
        self.places = Places(data.lineage, [r.kind for r in self.stage_renderers], names)

    def write(self) -> ThumbStats:
        spool, light = Spool(self.work, "sorted"), Spool(self.work, "places")
        with Thumbnails(self.files.directory / "thumbs", self.data.summary.out_dir) as thumbs:
            self._spool(spool, light, thumbs)
            stats = thumbs.stats
        self._number(light)
        stage_links: list[tuple[PageLink, ...]] = [() for _ in self.data.stages]
        chains: list[ChainLink] = []
        lists = {"problems": 0, "others": 0}
        for section, group in itertools.groupby(spool, key=lambda pair: pair[0][0]):
            if section == "0":
                for stage, pairs in itertools.groupby(group, key=lambda pair: pair[0][1:_SKIP]):
                    stage_links[int(stage, 16)] = tuple(self._grid(int(stage, 16), pairs))
            elif section == "1":
                for page in chain_pages(self._chain_items(group), self.page_jobs):
                    chains.append(self.renderer.link(page))
                    self._page(page, "chains")
            else:
                kind = "problems" if section == "2" else "others"
                for listed in staged_list_pages(kind, self._listed(group), self.list_jobs):
                    lists[kind] += 1
                    self._page(listed, kind)
        views = [StageView(st.number, st.info.name, st.info.needs, st.summary, grid, links)
                 for st, grid, links in zip(self.data.stages, self.grids, stage_links, strict=True)]
        self.files.index(self.index, self.renderer.index(views, chains, lists["problems"], lists["others"]))
        return stats

    def _spool(self, spool: Spool, light: Spool, thumbs: Thumbnails) -> None:
        indexes = [grid.index() for grid in self.grids]
        names = self.places.names
        for (member, stage, chain_key, up), entry in with_thumbnails(_split(self.data.members, 4), thumbs):
            s = int(stage)
            names.put(int(member), entry.job_id)
            line = entry_line(entry)
            grid_key = "0" + _STAGE % s + self.grids[s].key(entry, indexes[s])
            spool.add(grid_key, f"{member}\t{up}\t{line}")
            spool.add("1" + chain_key, f"{member}\t{stage}\t{up}\t{line}")
            light.add(grid_key, member)
            light.add("1" + chain_key, member)
            if entry.status in PROBLEM_STATUSES:
                spool.add(sort_key(2, entry.order), f"{stage}\t{line}")
        for (stage,), entry in with_thumbnails(_split(self.data.others, 1), thumbs):
            spool.add(sort_key(3, entry.order), f"{stage}\t{entry_line(entry)}")

    def _number(self, light: Spool) -> None:
        """Page the grids and the chains as ``write`` does, noting each member's two pages."""
        places = self.places
        for section, group in itertools.groupby(light, key=lambda pair: pair[0][0]):
            read: deque[int] = deque()
            if section == "0":
                for stage, pairs in itertools.groupby(group, key=lambda pair: pair[0][1:_SKIP]):
                    blanks = ((key[_SKIP:], _BLANK) for key in _noted(pairs, read))
                    for grid_page in grid_pages(blanks, self.grids[int(stage, 16)], self.page_jobs):
                        for _ in range(grid_page.jobs):  # a page holds the jobs read before it, in order
                            places.grid_page[read.popleft()] = grid_page.number
            else:
                cards = (ChainItem(key[1:], Card("", (), _BLANK)) for key in _noted(group, read))
                for chain_page in chain_pages(cards, self.page_jobs):
                    for _ in range(chain_page.jobs):
                        places.chain_page[read.popleft()] = chain_page.number

    def _grid(self, stage: int, pairs: Iterable[tuple[str, str]]) -> Iterator[PageLink]:
        """A stage's grid pages, written with each job's lineage; their links for the index."""
        renderer = self.stage_renderers[stage]
        read: deque[tuple[int, str]] = deque()

        def entries() -> Iterator[tuple[str, JobEntry]]:
            for key, line in pairs:
                member, up, text = line.split("\t", 2)
                read.append((int(member), up))
                yield key[_SKIP:], parse_entry(text)

        for page in grid_pages(entries(), self.grids[stage], self.page_jobs):
            links: dict[int, JobLinks] = {}
            for _ in range(page.jobs):
                member, up = read.popleft()
                links[self.data.lineage.order(member)] = self.places.links(member, *parse_upstream(up))
            self._grid_page(renderer, page, links)
            yield renderer.link(page)

    def _grid_page(self, renderer: StageRenderer, page: GridPage, links: dict[int, JobLinks]) -> None:
        digest = renderer.digest(page, links)
        self.files.put(page_name(renderer.kind, page.number), digest, lambda: renderer.page(page, digest, links))

    def _chain_items(self, pairs: Iterable[tuple[str, str]]) -> Iterator[ChainItem]:
        for key, line in pairs:
            member, stage, up, text = line.split("\t", 3)
            m, entry = int(member), parse_entry(text)
            info = self.data.stages[int(stage)].info
            own = tuple((name, value) for name, value in entry.labels if name != info.needs)
            lost, file = parse_upstream(up)
            lost = lost if self.data.lineage.up(m) < 0 else None
            yield ChainItem(key[1:], Card(info.name, own, entry, self.places.grid_href(m),
                                          anchor=self.places.anchor(m), file=file, lost=lost))

    def _listed(self, pairs: Iterable[tuple[str, str]]) -> Iterator[tuple[str, JobEntry]]:
        stages = self.data.lineage.stages
        for _, line in pairs:
            stage, text = line.split("\t", 1)
            s = int(stage)
            yield (stages[s].name if 0 <= s < len(stages) else ""), parse_entry(text)

    def _page(self, page: ChainPage | StagedListPage, kind: str) -> None:
        digest = self.renderer.digest(page)
        self.files.put(page_name(kind, page.number), digest, lambda: self.renderer.page(page, digest))


def _noted(pairs: Iterable[tuple[str, str]], read: deque[int]) -> Iterator[str]:
    """The keys of (key, member) pairs, each member noted in ``read`` as its key passes."""
    for key, member in pairs:
        read.append(int(member))
        yield key


def _split(path: Path, fields: int) -> Iterator[tuple[tuple[str, ...], JobEntry]]:
    """Lines of ``fields`` tab-separated fields, then a job: (fields, job)."""
    with path.open(encoding="ascii") as fh:
        for line in fh:
            *head, text = line.rstrip("\n").split("\t", fields)
            yield tuple(head), parse_entry(text)
