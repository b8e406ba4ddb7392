"""The output directory's lock: one run writes to a directory at a time."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..core.errors import KlingError

__all__ = ["LOCK_NAME", "LockError", "OutputLock"]

LOCK_NAME = ".kling-pipeline.lock"


class LockError(KlingError):
    """Another run holds the output directory."""

    invalid = True


class OutputLock:
    """An exclusive lock on an output directory, released when the process ends (even by kill -9)."""

    def __init__(self, directory: Path, name: str = LOCK_NAME) -> None:
        self.path = directory / name
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise LockError(f"{self.path.parent} is in use by another kling-pipeline run (pid {holder}); "
                            "wait for it to finish or use another output directory") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
