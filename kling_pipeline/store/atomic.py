"""Putting a file in place atomically: written to a temp name beside it, then renamed.

A reader sees the old file or the new one, never a part. ``durable`` also fsyncs the
file and its directory (the manifest's merges need that; images and pages are written
again from the manifest if a crash loses them, so they skip the fsync).
"""

from __future__ import annotations

import os
import threading

__all__ = ["fsync_dir", "write_atomic"]


def write_atomic(path: str | os.PathLike[str], data: bytes | str, *, durable: bool = False,
                 made: set[str] | None = None) -> None:
    """Write ``data`` to ``path`` through a temp file and a rename. ``made``: directories
    known to exist already (a caller writing many files saves a ``mkdir`` per file). Plain
    strings and ``os`` calls: the files thread runs this for every output file."""
    target = os.fspath(path)
    parent, name = os.path.split(target)
    if made is None or parent not in made:
        os.makedirs(parent or ".", exist_ok=True)
        if made is not None:
            made.add(parent)
    raw = data.encode() if isinstance(data, str) else data
    tmp = f"{parent}/.{name}.{os.getpid()}.{threading.get_ident()}.tmp"  # two threads never share one
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if durable:
        fsync_dir(parent or ".")


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename or a new file in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
