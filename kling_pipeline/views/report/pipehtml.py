"""A pipeline's pages to HTML: the index, the chains pages and the problem / other-job lists
(``PipelineRenderer``), and each stage's grid pages, rendered as a one-stage report's grid pages
are (``StageRenderer``: the same template, pages named after the stage). Same rules as ``html``:
autoescaped, the style allowed by its hash only, no script, relative links, a digest per page."""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from ...core.money import format_usd
from .chainpages import ChainPage, StagedListPage
from .grid import Layout
from .html import TEMPLATES, TOOL, PageLink, Renderer, _asset, _csp, _prefix, _quoted, page_name
from .links import JobLinks
from .model import STATUS_TEXT, ReportSummary
from .pages import GridPage, ListPage

__all__ = ["ChainLink", "PipelineRenderer", "StageRenderer", "StageView", "stage_kind"]

_SAFE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")


def stage_kind(number: int, name: str) -> str:
    """The name of a stage's grid pages, before their number: ``grid-refine`` (``grid-3`` when the
    stage's name would not do in a file name: a name never starts with a digit)."""
    return f"grid-{name if _SAFE.fullmatch(name) else number}"


class StageRenderer(Renderer):
    """A stage's grid pages: the one-stage grid page, its pages named ``grid-<stage>-0001.html``,
    each job with its lineage (``links.JobLinks``, by the job's order)."""

    def __init__(self, data: ReportSummary, grid: Layout, index: Path, pages_dir: Path, page_jobs: int,
                 kind: str) -> None:
        super().__init__(data, grid, index, pages_dir, page_jobs)
        self.kind = kind
        self.css = _asset("report.css") + _asset("chains.css")
        self.env.globals.update(page_name=lambda k, n: page_name(kind if k == "grid" else k, n),
                                css=Markup(self.css))  # noqa: S704 - our own files
        self._context = hashlib.sha256(self._context + kind.encode()).digest()

    @cached_property
    def _stage_templates_digest(self) -> bytes:
        digest = hashlib.sha256(self._templates_digest)
        for name in ("stagegrid.html.j2", "chains.css"):
            digest.update(_asset(name).encode("utf-8"))
        return digest.digest()

    def link(self, page: GridPage) -> PageLink:
        return replace(super().link(page), href=f"{self.pages_href}/{page_name(self.kind, page.number)}")

    def digest(self, page: GridPage | ListPage, links: Mapping[int, JobLinks] | None = None) -> str:
        digest = hashlib.sha256(self._stage_templates_digest + self._context)
        digest.update(repr((page, sorted((links or {}).items()))).encode("utf-8", "surrogatepass"))
        return digest.hexdigest()

    def page(self, page: GridPage | ListPage, digest: str, links: Mapping[int, JobLinks] | None = None) -> str:
        return self.env.get_template("stagegrid.html.j2").render(
            page=page, digest=digest, csp=_csp(self.css, None), index_href=self.index_href, links=links or {})


@dataclass(frozen=True, slots=True)
class ChainLink:
    """One chains page, as the index lists it."""

    href: str
    label: str
    jobs: int
    outputs: int


@dataclass(frozen=True, slots=True)
class StageView:
    """A stage as the index shows it."""

    number: int
    name: str
    needs: str | None
    data: ReportSummary
    grid: Layout
    pages: tuple[PageLink, ...]


class PipelineRenderer:
    def __init__(self, data: ReportSummary, stages: Sequence[str], index: Path, pages_dir: Path,
                 page_jobs: int) -> None:
        self.data = data
        self.page_jobs = page_jobs
        self.css = _asset("report.css") + _asset("chains.css")
        env = jinja2.Environment(loader=jinja2.PackageLoader(__package__, TEMPLATES), autoescape=True,
                                 undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
        full, thumbs = _prefix(data.out_dir, pages_dir), "./thumbs"
        env.filters["usd"] = format_usd
        env.filters["full"] = lambda rel: _quoted(full, str(rel))
        env.filters["thumb"] = lambda rel: _quoted(thumbs, str(rel))
        env.filters["basename"] = lambda rel: str(rel).rsplit("/", 1)[-1]
        env.globals.update(page_name=page_name, tool=TOOL, css=Markup(self.css),  # noqa: S704 - our own files
                           repeats=data.repeats, title=data.title, stages=tuple(stages))
        self.env = env
        self.index_href = _quoted(_prefix(index.parent, pages_dir), index.name)
        self.pages_href = urllib.parse.quote(_prefix(pages_dir, index.parent), safe="/")
        shown = (TOOL, data.title, data.repeats, tuple(stages), full, self.index_href)
        self._context = hashlib.sha256(repr(shown).encode("utf-8", "surrogatepass")).digest()

    @cached_property
    def _templates_digest(self) -> bytes:
        digest = hashlib.sha256()
        for name in ("_parts.html.j2", "chains.html.j2", "stagelist.html.j2", "report.css", "chains.css"):
            digest.update(_asset(name).encode("utf-8"))
        return digest.digest()

    def digest(self, page: ChainPage | StagedListPage) -> str:
        digest = hashlib.sha256(self._templates_digest + self._context)
        digest.update(repr(page).encode("utf-8", "surrogatepass"))
        return digest.hexdigest()

    def page(self, page: ChainPage | StagedListPage, digest: str) -> str:
        template = "chains.html.j2" if isinstance(page, ChainPage) else "stagelist.html.j2"
        return self.env.get_template(template).render(page=page, digest=digest, csp=_csp(self.css, None),
                                                      index_href=self.index_href)

    def link(self, page: ChainPage) -> ChainLink:
        first, last = page.rows[0], page.rows[-1]
        label = _row_label(first.root.card.job.combination, first.root.card.job.job_id)
        if len(page.rows) > 1:
            label = f"{label} … {_row_label(last.root.card.job.combination, last.root.card.job.job_id)}"
        if first.continued:
            label = f"{label} (continued)"
        return ChainLink(f"{self.pages_href}/{page_name('chains', page.number)}", label, page.jobs, page.outputs)

    def index(self, stages: Sequence[StageView], chains: Sequence[ChainLink], problem_pages: int,
              other_pages: int) -> str:
        data = self.data
        at = data.last_run_at
        last = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC") if at is not None else None
        lists = [
            ("problems", "Jobs that did not produce an output", data.totals.problems,
             [f"{self.pages_href}/{page_name('problems', n)}" for n in range(1, problem_pages + 1)]),
            ("others", "In the manifest but not in the chains of this plan", data.other_jobs,
             [f"{self.pages_href}/{page_name('others', n)}" for n in range(1, other_pages + 1)]),
        ]
        args: dict[str, Any] = {"data": data, "t": data.totals, "stage_views": stages, "chains": chains,
                                "lists": lists, "status_text": STATUS_TEXT, "last_run": last,
                                "page_jobs": self.page_jobs, "csp": _csp(self.css, None)}
        return self.env.get_template("pipeline.html.j2").render(**args)


def _row_label(combination: str, job_id: str) -> str:
    return combination or job_id
