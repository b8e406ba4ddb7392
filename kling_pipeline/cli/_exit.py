"""The one place where errors become exit codes and messages.

Exit codes (documented in the README):
0 all done · 1 some jobs failed / other error · 2 invalid input · 3 budget stop ·
130 interrupted.
"""

from __future__ import annotations

import os
import traceback
from typing import TextIO

from ..core.errors import KlingError, RecipeError

__all__ = ["EXIT_BUDGET", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_INVALID", "EXIT_OK", "report"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_BUDGET = 3
EXIT_INTERRUPTED = 130


def exit_code(exc: BaseException) -> int:
    """130 for Ctrl-C; 2 for an error that refused the command before anything was done (a
    recipe, a flag, the config, a refused key, a retired or unknown app, a locked directory:
    ``KlingError.invalid``); else 1."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_INVALID if isinstance(exc, KlingError) and exc.invalid else EXIT_FAILED


def report(exc: BaseException, err: TextIO) -> int:
    """Print ``exc`` for a person (never a traceback for a known error); return the exit code."""
    code = exit_code(exc)
    if isinstance(exc, KeyboardInterrupt):
        err.write("interrupted\n")
    elif isinstance(exc, RecipeError):
        err.write(f"{exc}\n")
        files = sorted({d.position.file for d in exc.diagnostics if d.position})
        where = f" in {', '.join(files)}" if files else ""
        err.write(f"{exc.total} error{'s' if exc.total != 1 else ''}{where}; nothing was sent\n")
    elif isinstance(exc, KlingError):
        err.write(f"error: {exc}\n")
    else:
        err.write(f"internal error: {type(exc).__name__}: {exc}\n"
                  "This is a bug in kling-pipeline; set KLING_PIPELINE_DEBUG=1 for the traceback.\n")
        if os.environ.get("KLING_PIPELINE_DEBUG"):
            traceback.print_exception(exc, file=err)
    return code
