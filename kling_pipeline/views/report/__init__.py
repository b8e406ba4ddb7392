"""The gallery report: a static, self-contained HTML page of a sweep's images.

``collect`` reads an output directory's manifest (and the plan, when the recipe is
known) into frozen ``ReportData``; ``render_report`` lays it out as a grid over two
matrix axes with the others as facets; ``write_report`` does both and writes the page
(temp file + rename). The page references the images relatively, so it works from
``file://`` and after the directory is copied elsewhere.
"""

from __future__ import annotations

from .collect import build_report_data, collect
from .grid import Cell, Facet, Layout, choose_axes, layout
from .html import image_href, render_report
from .model import STATUS_TEXT, STATUSES, AxisInfo, ImageRef, JobEntry, ReportData, Totals
from .write import REPORT_NAME, ReportError, report_path, write_html, write_report

__all__ = [
    "REPORT_NAME",
    "STATUSES",
    "STATUS_TEXT",
    "AxisInfo",
    "Cell",
    "Facet",
    "ImageRef",
    "JobEntry",
    "Layout",
    "ReportData",
    "ReportError",
    "Totals",
    "build_report_data",
    "choose_axes",
    "collect",
    "image_href",
    "layout",
    "render_report",
    "report_path",
    "write_html",
    "write_report",
]
