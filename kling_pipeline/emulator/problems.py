"""RFC 9457 problem+json answers."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["PROBLEM_BASE", "Problem"]

PROBLEM_BASE = "https://inference.sh/problems/"


class Problem(Exception):
    """An error answer: HTTP status, a code (the end of the ``type`` URI), and extra members."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str,
        *,
        headers: list[tuple[str, str]] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.headers = headers or []
        self.extra = extra

    def body(self) -> bytes:
        doc = {
            "type": PROBLEM_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        doc.update(self.extra)
        return json.dumps(doc, ensure_ascii=False).encode()
