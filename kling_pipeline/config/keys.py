"""Reading an API key: from an environment variable, or from a file only its owner can read.

A key file must be a regular file owned by the user, with no permission for the group or
others (like ssh's private keys: ``chmod 600``); it holds the key alone (surrounding
whitespace and a final newline are fine). Messages name the file, never what it holds.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..api.client import Secret
from ..core.errors import Diagnostic
from ..core.localfiles import ReadProblem, read_regular
from .profiles import ConfigError

__all__ = ["MAX_KEY_BYTES", "key_from_file", "key_from_text"]

MAX_KEY_BYTES = 4096


def _fail(message: str) -> ConfigError:
    return ConfigError([Diagnostic(None, message)])


def _check_permissions(path: Path, what: str) -> None:
    if os.name != "posix":  # (Windows has no mode bits to check)
        return
    try:
        info = path.stat()
    except FileNotFoundError:
        raise _fail(f"{what} {path}: no such file") from None
    except OSError as exc:
        raise _fail(f"{what} {path}: cannot read it: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise _fail(f"{what} {path}: not a regular file")
    if info.st_uid != os.getuid():
        raise _fail(f"{what} {path}: owned by another user; a key file must be your own")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        who = "the group and others" if mode & 0o070 and mode & 0o007 else "others" if mode & 0o007 else "the group"
        raise _fail(f"{what} {path}: permissions {mode:04o} let {who} at the key; refused. "
                    f"Run: chmod 600 {path}")


def key_from_text(text: str, where: str) -> Secret | None:
    """The key in ``text`` (None when it is empty); more than one word is a mistake."""
    stripped = text.strip()
    if not stripped:
        return None
    if len(stripped.split()) != 1:
        raise _fail(f"{where}: holds more than one word; it should hold the API key alone")
    return Secret(stripped)


def key_from_file(path: Path, what: str) -> Secret:
    """The key in the file at ``path``, after checking who may read it. Raises ``ConfigError``."""
    _check_permissions(path, what)
    try:
        data = read_regular(path, MAX_KEY_BYTES)
    except ReadProblem as exc:
        reason = "larger than 4 KB: not a key file" if exc.kind == "too_large" else exc.detail or exc.kind
        raise _fail(f"{what} {path}: {reason}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _fail(f"{what} {path}: not UTF-8 text") from None
    key = key_from_text(text, f"{what} {path}")
    if key is None:
        raise _fail(f"{what} {path}: the file is empty")
    return key
