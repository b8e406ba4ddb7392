"""A written report as a reader finds it: the index page, then every page it links to (parsed)."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from .dom import Element, parse


@dataclass
class Page:
    path: Path
    html: str
    root: Element


@dataclass
class Site:
    index: Page
    grid: list[Page]  # in the index's order
    problems: list[Page]
    others: list[Page]

    @property
    def pages(self) -> list[Page]:
        return [*self.grid, *self.problems, *self.others]

    def sections(self) -> list[Element]:
        return [s for page in self.grid for s in page.root.all("section.facet")]

    def jobs(self) -> list[Element]:
        return [d for page in self.grid for d in page.root.all("div.job")]

    def job(self, job_id: str) -> Element:
        (found,) = [d for d in self.jobs() if d.attrs.get("data-job") == job_id]
        return found

    def problem_rows(self) -> list[Element]:
        return [tr for page in self.problems for tr in page.root.one("tbody").all("tr")]


def target(page: Path, href: str) -> Path:
    """The file a relative link of ``page`` points at."""
    assert href.startswith(("./", "../")), href
    return (page.parent / urllib.parse.unquote(href.split("#", maxsplit=1)[0])).resolve()


def load(path: Path) -> Page:
    html = path.read_text(encoding="utf-8")
    return Page(path, html, parse(html))


def read_site(index: Path) -> Site:
    first = load(index)
    grid = [load(target(index, a.get("href"))) for a in first.root.one("section.contents").all("a")]

    def listed(kind: str) -> list[Page]:
        found = [s for s in first.root.all("section") if s.attrs.get("id") == kind]
        return [load(target(index, a.get("href"))) for s in found for a in s.all("a")]

    return Site(first, grid, listed("problems"), listed("others"))
