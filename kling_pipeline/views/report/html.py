"""Pages to HTML (Jinja2, autoescaped; inline style and script allowed by their hashes only; no
external URLs). Grid and list pages carry a digest of what they show, so that an unchanged page
is recognised without rendering it again (see ``write``)."""

from __future__ import annotations

import base64
import hashlib
import os
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from ... import __version__
from ...core.money import format_usd
from .grid import Layout
from .model import STATUS_TEXT, ReportSummary
from .pages import GridPage, ListPage, Section

__all__ = ["AXIS_VALUES_SHOWN", "JUMP_MAX_VALUES", "PageLink", "Renderer", "image_href", "page_name"]

TEMPLATES = "templates"
AXIS_VALUES_SHOWN = 40  # values listed per axis on the index page
JUMP_MAX_VALUES = 300  # facet selects on the index only while every facet axis has at most this many values
TOOL = f"kling-pipeline {__version__}"
DASH = "\u2013"  # between the first and the last row (or column) of a page


def image_href(out_dir: Path, rel: str, base: Path) -> str:
    """The URL of ``out_dir/rel`` relative to ``base`` (the directory of the page): percent-encoded,
    always starting with ``./`` or ``../`` so that no file name reads as a URL scheme."""
    return _quoted(_prefix(out_dir, base), rel)


def _prefix(target_dir: Path, base: Path) -> str:
    path = os.path.relpath(os.path.abspath(target_dir), os.path.abspath(base)).replace(os.sep, "/")
    return "." if path == "." else path if path.startswith("../") or path == ".." else "./" + path


def _quoted(prefix: str, rel: str) -> str:
    return urllib.parse.quote(f"{prefix}/{rel}", safe="/")


def page_name(kind: str, number: int) -> str:
    """``grid-0001.html``, ``problems-0001.html``, ``others-0001.html``."""
    return f"{kind}-{number:04d}.html"


@dataclass(frozen=True, slots=True)
class PageLink:
    """One grid page, as the index lists it."""

    href: str
    label: str
    jobs: int
    images: int
    first: str  # facet codes of its first section, "0.2"
    last: str


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(TEMPLATES, name).read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def _csp(css: str, js: str | None) -> str:
    """Only the page's own style (and script) may run: injected markup could not execute even if
    something escaped escaping."""
    script = _sha256(js) if js is not None else "'none'"
    return (f"default-src 'none'; img-src 'self' file: data:; media-src 'self' file:; style-src {_sha256(css)}; "
            f"script-src {script}; base-uri 'none'; form-action 'none'")


class Renderer:
    """Renders the pages of one report: the index at ``index_dir``, the others in ``pages_dir``."""

    def __init__(self, data: ReportSummary, grid: Layout, index: Path, pages_dir: Path, page_jobs: int) -> None:
        self.data = data
        self.grid = grid
        self.page_jobs = page_jobs
        self.css, self.js = _asset("report.css"), _asset("index.js")
        env = jinja2.Environment(loader=jinja2.PackageLoader(__package__, TEMPLATES), autoescape=True,
                                 undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
        full, thumbs = _prefix(data.out_dir, pages_dir), "./thumbs"
        env.filters["usd"] = format_usd
        env.filters["full"] = lambda rel: _quoted(full, str(rel))
        env.filters["thumb"] = lambda rel: _quoted(thumbs, str(rel))
        env.filters["basename"] = lambda rel: str(rel).rsplit("/", 1)[-1]
        env.globals.update(page_name=page_name, tool=TOOL, css=Markup(self.css),  # noqa: S704 - our own file
                           repeats=data.repeats, grid=grid, title=data.title)
        self.env = env
        self.index_href = _quoted(_prefix(index.parent, pages_dir), index.name)
        self.pages_href = urllib.parse.quote(_prefix(pages_dir, index.parent), safe="/")
        # What a grid or list page shows besides its own jobs (not the axes' values: a value new
        # elsewhere in the sweep leaves a page as it was)
        shown = (TOOL, data.title, data.repeats, grid.rows and grid.rows.name, grid.cols and grid.cols.name,
                 [a.name for a in grid.facet_axes], grid.fixed, grid.blocks > 1, full, self.index_href)
        self._context = hashlib.sha256(repr(shown).encode("utf-8", "surrogatepass")).digest()

    @cached_property
    def _templates_digest(self) -> bytes:
        digest = hashlib.sha256()
        for name in ("_parts.html.j2", "grid.html.j2", "list.html.j2", "report.css"):
            digest.update(_asset(name).encode("utf-8"))
        return digest.digest()

    def digest(self, page: GridPage | ListPage) -> str:
        """What the page shows, in 64 hex digits: its templates, the report's settings, and the page
        (its jobs as read from the manifest, its place among the pages)."""
        digest = hashlib.sha256(self._templates_digest + self._context)
        digest.update(repr(page).encode("utf-8", "surrogatepass"))
        return digest.hexdigest()

    def page(self, page: GridPage | ListPage, digest: str) -> str:
        template = "grid.html.j2" if isinstance(page, GridPage) else "list.html.j2"
        return self.env.get_template(template).render(page=page, digest=digest, csp=_csp(self.css, None),
                                                      index_href=self.index_href)

    def link(self, page: GridPage) -> PageLink:
        """How the index lists ``page``: its first and last facet (with their rows when it holds only
        some of them), its columns when the grid is split across."""
        first, last = page.sections[0], page.sections[-1]
        label = self._section_label(first)
        if len(page.sections) > 1:
            label = f"{label} … {self._section_label(last)}"
        if self.grid.blocks > 1:
            cols = f"columns {_value(first.columns[0])} {DASH} {_value(first.columns[-1])}"
            label = f"{label}, {cols}" if label else cols
        return PageLink(href=f"{self.pages_href}/{page_name('grid', page.number)}", label=label or "every job",
                        jobs=page.jobs, images=page.images, first=".".join(map(str, first.codes)),
                        last=".".join(map(str, last.codes)))

    def _section_label(self, section: Section) -> str:
        text = _facet_text(section.facet)
        if self.grid.rows is not None and (section.continued or section.more or not text):
            top, bottom = _value(section.rows[0].label), _value(section.rows[-1].label)
            rows = f"{self.grid.rows.name} {top if top == bottom else f'{top} {DASH} {bottom}'}"
            text = f"{text} ({rows})" if text else rows
        return text

    def index(self, contents: Sequence[PageLink], problem_pages: int, other_pages: int) -> str:
        data, grid = self.data, self.grid
        at = data.last_run_at
        last = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC") if at is not None else None
        roles: dict[str, str] = {a.name: "facet" for a in grid.facet_axes}
        roles.update({name: "the same for every job" for name, _ in grid.fixed})
        if grid.rows is not None:
            roles[grid.rows.name] = "rows"
        if grid.cols is not None:
            roles[grid.cols.name] = "columns"
        jump = bool(grid.facet_axes) and len(contents) > 1 and all(
            a.size <= JUMP_MAX_VALUES for a in grid.facet_axes)
        lists = [
            ("problems", "Jobs that did not produce an image", data.totals.problems,
             [f"{self.pages_href}/{page_name('problems', n)}" for n in range(1, problem_pages + 1)]),
            ("others", "In the manifest but not in this plan", data.other_jobs,
             [f"{self.pages_href}/{page_name('others', n)}" for n in range(1, other_pages + 1)]),
        ]
        args: dict[str, Any] = {"data": data, "t": data.totals, "contents": contents, "lists": lists,
                                "status_text": STATUS_TEXT, "last_run": last, "roles": roles, "jump": jump,
                                "axis_values": AXIS_VALUES_SHOWN, "page_jobs": self.page_jobs,
                                "js": Markup(self.js),  # noqa: S704 - our own file
                                "csp": _csp(self.css, self.js if jump else None)}
        return self.env.get_template("index.html.j2").render(**args)


def _value(value: str | None) -> str:
    return value if value is not None else "(not set)"


def _facet_text(values: Sequence[tuple[str, str | None]]) -> str:
    return " · ".join(f"{name} = {_value(v)}" for name, v in values)
