"""The ``kling-pipeline`` command line: parse, dispatch, map errors to exit codes."""

from __future__ import annotations

from ._main import main

__all__ = ["main"]
