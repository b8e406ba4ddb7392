"""Writing the page: to a temp name beside the target, then renamed into place."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ...core.errors import KlingError
from ...core.planning import Plan
from .collect import collect
from .html import render_report

__all__ = ["REPORT_NAME", "ReportError", "report_path", "write_html", "write_report"]

REPORT_NAME = "report.html"


class ReportError(KlingError):
    """The report cannot be written."""


def report_path(out_dir: Path, output: str | os.PathLike[str] | None = None) -> Path:
    """Where the page goes: ``output`` (a file, or a directory to hold ``report.html``),
    else ``out_dir/report.html``."""
    if output is None:
        return Path(out_dir) / REPORT_NAME
    path = Path(output)
    return path / REPORT_NAME if path.is_dir() else path


def write_html(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (a reader sees the old page or the new one)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ReportError(f"{path}: cannot write the report: {exc.strerror or exc}") from None
    return path


def write_report(out_dir: str | os.PathLike[str], plan: Plan | None = None, rows: str | None = None,
                 cols: str | None = None, output: str | os.PathLike[str] | None = None) -> Path:
    """Collect ``out_dir``'s manifest (with ``plan``: every planned job, run or not), render the
    gallery and write it (default ``out_dir/report.html``). Returns the page's path."""
    out = Path(out_dir)
    target = report_path(out, output)
    data = collect(out, plan)
    return write_html(target, render_report(data, rows=rows, cols=cols, base=target.parent))
