"""A report's page files: each written atomically, and only when its digest changed; pages left
from an earlier, longer report removed."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from pathlib import Path

from ...core.errors import KlingError
from ...store.atomic import write_atomic

__all__ = ["PageFiles", "ReportError", "write_html"]

# a one-stage report's grid-0001.html, a pipeline's chains-0001.html and grid-<stage>-0001.html, the lists
_PAGE_FILE = re.compile(r"(grid|problems|others|chains)(-[A-Za-z0-9_]+)?-\d{4,}\.html")
_DIGEST = re.compile(rb'<meta name="kling-pipeline-digest" content="([0-9a-f]{64})">')


class ReportError(KlingError):
    """The report cannot be written."""


def write_html(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (a reader sees the old page or the new one)."""
    try:
        write_atomic(path, text.encode("utf-8", errors="replace"))
    except OSError as exc:
        raise ReportError(f"{path}: cannot write the report: {exc.strerror or exc}") from None
    return path


class PageFiles:
    """The pages of one report, in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.names: set[str] = set()
        self.written = self.unchanged = 0

    def put(self, name: str, digest: str, render: Callable[[], str]) -> None:
        """The page ``name`` that shows what ``digest`` says: rendered and written unless the page
        on disk carries that digest already."""
        self.names.add(name)
        path = self.directory / name
        if _recorded_digest(path) == digest:
            self.unchanged += 1
            return
        write_html(path, render())
        self.written += 1

    def index(self, path: Path, html: str) -> None:
        """The index page, written when its bytes changed."""
        if _read(path) != html.encode("utf-8", "replace"):
            write_html(path, html)

    def remove_stale(self) -> int:
        removed = 0
        with os.scandir(self.directory) as found:
            for item in found:
                if _PAGE_FILE.fullmatch(item.name) and item.name not in self.names and item.is_file():
                    with contextlib.suppress(OSError):
                        os.unlink(item.path)
                        removed += 1
        return removed


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _recorded_digest(path: Path) -> str | None:
    """The digest a page written by an earlier report carries in its head (None: no such page)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(2048)
    except OSError:
        return None
    found = _DIGEST.search(head)
    return found.group(1).decode() if found else None
