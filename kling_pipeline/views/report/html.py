"""``ReportData`` to one self-contained HTML page (Jinja2, autoescaped; no external URLs)."""

from __future__ import annotations

import base64
import hashlib
import os
import urllib.parse
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import jinja2
from markupsafe import Markup

from ... import __version__
from ...core.money import format_usd
from .grid import layout
from .model import STATUS_TEXT, ReportData

__all__ = ["image_href", "render_report"]

TEMPLATES = "templates"
PROBLEM_STATUSES = ("failed", "cancelled", "rejected", "unknown", "in_flight")


def image_href(out_dir: Path, rel: str, base: Path) -> str:
    """The URL of ``out_dir/rel`` relative to ``base`` (the directory of the page): percent-encoded,
    always starting with ``./`` or ``../`` so that no file name reads as a URL scheme."""
    target = os.path.join(os.path.abspath(out_dir), *rel.split("/"))
    path = os.path.relpath(target, os.path.abspath(base)).replace(os.sep, "/")
    if not path.startswith("../"):
        path = "./" + path
    return urllib.parse.quote(path, safe="/")


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(TEMPLATES, name).read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader(__package__, TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["usd"] = format_usd
    return env


def render_report(data: ReportData, *, rows: str | None = None, cols: str | None = None, base: Path) -> str:
    """The page for ``data``: a grid over ``rows`` x ``cols`` (default: the first two axes with more
    than one value), other axes as facets. Image links are relative to ``base``, the directory the
    page will be written into. Raises ``UsageError`` for an axis the data does not have."""
    grid = layout(data, rows, cols)
    css, js = _asset("report.css"), _asset("report.js")
    # Only this page's own style and script may run: injected markup could not execute even if
    # something escaped escaping.
    csp = (f"default-src 'none'; img-src 'self' file: data:; style-src {_sha256(css)}; "
           f"script-src {_sha256(js)}; base-uri 'none'; form-action 'none'")
    env = _environment()
    env.filters["url"] = lambda rel: image_href(data.out_dir, str(rel), base)
    last = (datetime.fromtimestamp(data.last_run_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
            if data.last_run_at is not None else None)
    problems = [j for j in data.jobs if j.status in PROBLEM_STATUSES]
    return env.get_template("report.html.j2").render(
        data=data, t=data.totals, grid=grid, css=Markup(css), js=Markup(js),  # noqa: S704 - our own files
        csp=csp, status_text=STATUS_TEXT, last_run=last, problems=problems,
        repeats=any(j.repeat_index for j in data.jobs), tool=f"kling-pipeline {__version__}",
    )
