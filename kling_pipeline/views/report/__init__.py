"""The gallery report: static, self-contained HTML pages of a sweep's images, at any size.

``write_report`` writes an index page (``report.html``: totals, axes, the list of pages) and beside
it a directory (``report/``) of grid pages of at most ``PAGE_JOBS`` jobs each, lists of the jobs
that produced no image, and a thumbnail per image content (``report/thumbs/``). It streams the
manifest (``source``, its only reader) instead of holding it, and rewrites only the pages whose
content changed. Every link is relative, so the directory works from ``file://`` and after being
copied elsewhere.

A pipeline's manifest (a recipe with ``stages:``) gets an index with each stage's totals, chains
pages (each first-stage job and everything made from it, as a tree) and a grid per stage whose
jobs link to the job they were made from and to the jobs made from them (``pipewrite``).
"""

from __future__ import annotations

from .collect import Collected, collect, report_status
from .grid import COLS_PER_PAGE, Layout, choose_axes, layout
from .html import image_href, page_name
from .model import STATUS_TEXT, STATUSES, AxisInfo, ImageRef, JobEntry, ReportSummary, Totals
from .pages import LIST_JOBS, PAGE_JOBS
from .thumbs import THUMB_BOX, ThumbStats, make_thumbnail
from .write import REPORT_NAME, ReportError, ReportResult, pages_dir, report_path, write_html, write_report

__all__ = [
    "COLS_PER_PAGE",
    "LIST_JOBS",
    "PAGE_JOBS",
    "REPORT_NAME",
    "STATUSES",
    "STATUS_TEXT",
    "THUMB_BOX",
    "AxisInfo",
    "Collected",
    "ImageRef",
    "JobEntry",
    "Layout",
    "ReportError",
    "ReportResult",
    "ReportSummary",
    "ThumbStats",
    "Totals",
    "choose_axes",
    "collect",
    "image_href",
    "layout",
    "make_thumbnail",
    "page_name",
    "pages_dir",
    "report_path",
    "report_status",
    "write_html",
    "write_report",
]
