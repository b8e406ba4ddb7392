"""A pipeline's written report as a reader finds it: the index, then every page it links to
(parsed), and checks that every link of every page leads somewhere."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from .dom import Element
from .site import Page, load, target


@dataclass
class ChainSite:
    index: Page
    chains: list[Page]  # in the index's order
    grids: dict[str, list[Page]]  # stage -> its grid pages, in the index's order
    problems: list[Page]
    others: list[Page]

    @property
    def pages(self) -> list[Page]:
        return [*self.chains, *(p for pages in self.grids.values() for p in pages), *self.problems, *self.others]

    def stage_row(self, stage: str) -> Element:
        (row,) = [tr for tr in self.index.root.one("table.stages").all("tr") if tr.attrs.get("data-stage") == stage]
        return row

    def linked(self, stage: str) -> list[tuple[Page, Element]]:
        """Each job of a stage's grid (its ``div.linked``: the job and its lineage), with its page."""
        return [(page, d) for page in self.grids[stage] for d in page.root.all("div.linked")]

    def cards(self) -> list[tuple[Page, Element]]:
        """Each job shown in full on the chains pages (stubs left out), with its page."""
        return [(page, c) for page in self.chains for c in page.root.all("div.card") if "stub" not in c.classes]


def read_chain_site(index: Path) -> ChainSite:
    first = load(index)
    root = first.root

    def pages(section: Element) -> list[Page]:
        return [load(target(index, a.get("href"))) for a in section.one("ol.pages").all("a")]

    (chains,) = [s for s in root.all("section") if s.attrs.get("id") == "chains"]
    grids = {s.get("data-stage"): pages(s) for s in root.all("section.stage-grid")}

    def listed(kind: str) -> list[Page]:
        found = [s for s in root.all("section") if s.attrs.get("id") == kind]
        return [load(target(index, a.get("href"))) for s in found for a in s.all("a")]

    return ChainSite(first, pages(chains), grids, listed("problems"), listed("others"))


def elements(element: Element) -> list[Element]:
    """An element's child elements (not its text)."""
    return [c for c in element.children if isinstance(c, Element)]


def job_of(element: Element) -> str:
    """The id of the one job an element shows (a ``div.linked``, a card)."""
    jobs = element.all("div.job")
    assert len(jobs) == 1, element.attrs
    return jobs[0].get("data-job")


class Resolver:
    """Follows relative links: the file must exist and, for a page, its #fragment must be an id of it."""

    def __init__(self) -> None:
        self._ids: dict[Path, dict[str, Element]] = {}

    def element(self, page: Path, href: str) -> Element | None:
        """The element a link to ``page#id`` points at (None: no such page or id)."""
        path = target(page, href)
        fragment = urllib.parse.unquote(href.split("#", 1)[1]) if "#" in href else None
        if not path.is_file():
            return None
        if path not in self._ids:
            ids: dict[str, Element] = {}
            if path.suffix == ".html":
                for e in load(path).root.iter():
                    if e.attrs.get("id"):
                        ids[str(e.attrs["id"])] = e
            self._ids[path] = ids
        if fragment is None:
            return Element("#file", {})
        return self._ids[path].get(fragment)

    def broken(self, pages: list[Page]) -> list[str]:
        """Every ``href`` and ``src`` of ``pages`` that leads nowhere (or is not relative)."""
        out = []
        for page in pages:
            for e in page.root.iter():
                for attr in ("href", "src"):
                    value = e.attrs.get(attr)
                    if value is None:
                        continue
                    if value.startswith("#"):
                        value = page.path.name + value
                    if ":" not in value.split("/", 1)[0] and not value.startswith(("/", ".")):
                        value = "./" + value  # a page beside it (the pagers' links)
                    if not value.startswith(("./", "../")) or self.element(page.path, value) is None:
                        out.append(f"{page.path.name}: {value}")
        return out
