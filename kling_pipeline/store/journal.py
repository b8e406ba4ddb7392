"""The write-ahead manifest on disk: an append-only, fsync'd JSONL journal per output directory.

Every paid action is bracketed by records (see ``records``): ``intent`` (before
``POST /apps/run``, with the input and the reserved cost), ``accepted`` / ``adopted``
(the task id), ``unknown`` / ``not_created`` (what a failed submit means), and ``done``
(the terminal state, outputs, billed cost). Replaying them (``state``) gives each job's
state, the spend so far and the upload cache; that is how a run resumes.

Writes go through one writer thread, in order, one ``write`` + ``fsync`` per batch;
only ``intent`` records are waited for (see ``Journal``). A line cut short by kill -9 is
dropped (and the file trimmed) on open. Output files (an image and its sidecar) are put
in place by a second thread.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..core.errors import KlingError
from .atomic import fsync_dir, write_atomic
from .records import Record, encode, parse

__all__ = ["MANIFEST_NAME", "FileWrite", "Journal", "ManifestError", "read_raw", "read_records"]

MANIFEST_NAME = "manifest.jsonl"


class ManifestError(KlingError):
    """The manifest cannot be read or written."""


def read_raw(path: Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """Every complete line's JSON object, as written. A last line without its newline (a write cut by kill -9)
    is ignored, and with ``repair`` trimmed from the file so appends stay line-aligned."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read the manifest: {exc.strerror or exc}") from None
    end = data.rfind(b"\n") + 1
    if end < len(data) and repair:
        with path.open("r+b") as fh:
            fh.truncate(end)
            os.fsync(fh.fileno())
    records = []
    for number, line in enumerate(data[:end].splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise ManifestError(
                f"{path}:{number}: corrupt manifest line (not JSON); the file was changed by hand? "
                "Move it away to start over (spend recorded in it is then forgotten)") from None
        if isinstance(record, dict):
            records.append(record)
    return records



def read_records(path: Path, *, repair: bool = False) -> list[Record]:
    """Every complete record, typed (kinds this version does not know are skipped)."""
    return [r for r in map(parse, read_raw(path, repair=repair)) if r is not None]


class Journal:
    """The manifest writer: records in order, one ``write`` + ``fsync`` per batch, in a thread.

    ``append(record)`` returns once the record is on disk (used for ``intent``,
    which must be durable before a request is sent). ``post(record, files)`` only
    queues. Files (an image and its sidecar) are put in place by a second thread,
    so an intent never waits behind image writes; a crash can lose a posted record
    or file, and a resume copes with both (it re-attaches, reconciles, or fetches
    a missing image again by task id) without paying again.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        fd = -1
        try:
            new = not path.exists()
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            if new:
                fsync_dir(path.parent)
        except OSError as exc:
            if fd >= 0:
                os.close(fd)
            raise ManifestError(f"{path}: cannot open the manifest: {exc.strerror or exc}") from None
        self._fd = fd
        self._failed: ManifestError | None = None
        self._dirs: set[str] = set()  # directories known to exist (the files thread's own)
        self._records = _Worker(self._write_records, "kling-pipeline-manifest")
        self._files = _Worker(self._write_files, "kling-pipeline-files")

    def _write_records(self, batch: list[Any]) -> None:
        """Write the batch; fsync only when someone waits for it (an intent, a flush).

        Records nobody waits for reach the page cache now (so kill -9 cannot lose
        them) and the disk with the next fsync or at close.
        """
        data = b"".join(line for line, _ in batch)
        waiters = [w for _, w in batch if w is not None]
        error = self._failed
        if error is None:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view):]
                if waiters:
                    os.fsync(self._fd)
            except OSError as exc:
                error = self._failed = ManifestError(f"{self.path}: cannot write the manifest: {exc.strerror or exc}")
        _notify_all(waiters, error)

    def _write_files(self, batch: list[Any]) -> None:
        for write, _ in batch:
            if self._failed is None and write is not None:
                try:
                    write.commit(self._dirs)
                except OSError as exc:
                    self._failed = ManifestError(f"{write.path}: cannot write: {exc.strerror or exc}")
        _notify_all([w for _, w in batch if w is not None], self._failed)

    def _check(self) -> None:
        if self._failed is not None:
            raise self._failed

    def post(self, record: Record, files: Sequence[FileWrite] = ()) -> None:
        """Queue ``files`` and ``record``; do not wait for the disk."""
        self._check()
        for write in files:
            self._files.put((write, None))
        self._records.put((encode(record), None))

    def queue(self, work: Committable) -> None:
        """Hand ``work`` to the files thread after what is queued there; do not wait for it."""
        self._check()
        self._files.put((work, None))

    async def write_files(self, files: Sequence[FileWrite]) -> None:
        """Put ``files`` in place (by the files thread); return once they are written. Waiting
        here bounds how many downloaded images wait in memory for the disk."""
        if not files:
            return
        self._check()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        for write in files[:-1]:
            self._files.put((write, None))
        self._files.put((files[-1], (loop, done)))
        await done

    async def append(self, record: Record) -> None:
        """Write ``record``; return once it is on disk."""
        self._check()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._records.put((encode(record), (loop, done)))
        await done

    def append_now(self, record: Record) -> None:
        """Write and fsync one record from synchronous code (tests, tools)."""
        self._check()
        marker = threading.Event()
        self._records.put((encode(record), marker))
        marker.wait()
        self._check()

    def flush(self) -> None:
        """Block until everything queued so far is on disk."""
        for worker, item in ((self._files, (None, threading.Event())), (self._records, (b"", threading.Event()))):
            worker.put(item)
            item[1].wait()
        self._check()

    def close(self) -> None:
        """Write everything queued, stop the threads, close the file. Raises ``ManifestError``
        if anything queued could not be written (so a run never claims success over a gap)."""
        if self._fd < 0:
            return
        self._files.close()
        self._records.close()
        try:
            if self._failed is None:
                os.fsync(self._fd)  # records nobody waited for were written, not yet synced
        except OSError as exc:
            self._failed = ManifestError(f"{self.path}: cannot write the manifest: {exc.strerror or exc}")
        finally:
            os.close(self._fd)
            self._fd = -1
        if self._failed is not None:
            raise self._failed


class _Worker:
    """A thread that hands what was queued, as one batch, to ``handle``.

    Items nobody waits for are gathered for up to ``GATHER`` seconds first (one
    wake-up and one write for many); an item with a waiter is handled at once.
    """

    GATHER = 0.02

    def __init__(self, handle: Callable[[list[Any]], None], name: str) -> None:
        self._handle = handle
        self._cv = threading.Condition()
        self._queue: list[Any] = []
        self._closed = False
        self._urgent = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, item: Any) -> None:
        waits = item[1] is not None
        with self._cv:
            if self._closed:
                raise ManifestError("the manifest is closed")
            wake = not self._queue or waits
            self._queue.append(item)
            self._urgent = self._urgent or waits
            if wake:
                self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if not self._urgent and not self._closed:
                    self._cv.wait(self.GATHER)  # a waiter's put wakes us early
                batch, self._queue, self._urgent = self._queue, [], False
                if not batch and self._closed:
                    return
            self._handle(batch)

    def close(self) -> None:
        with self._cv:
            if self._closed:
                return
            self._closed = True
            self._cv.notify()
        self._thread.join()


def _notify_all(waiters: list[Any], error: ManifestError | None) -> None:
    """Wake the waiters of a batch: threads directly, event-loop futures with one call per loop."""
    by_loop: dict[Any, list[asyncio.Future[None]]] = {}
    for waiter in waiters:
        if isinstance(waiter, threading.Event):
            waiter.set()
        else:
            loop, fut = waiter
            by_loop.setdefault(loop, []).append(fut)
    for loop, futures in by_loop.items():

        def resolve(futures: list[asyncio.Future[None]] = futures) -> None:
            for fut in futures:
                if fut.done():
                    continue
                if error is not None:
                    fut.set_exception(error)
                else:
                    fut.set_result(None)

        try:
            loop.call_soon_threadsafe(resolve)
        except RuntimeError:  # the loop is gone (its run was cancelled): nobody waits any more
            pass


class Committable(Protocol):
    """What the files thread does: ``commit``; ``path`` names it in an error."""

    @property
    def path(self) -> str: ...

    def commit(self, made: set[str] | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class FileWrite:
    """A file the files thread puts in place: ``data`` written atomically, or an
    already-written temp file ``source`` renamed."""

    path: str  # plain strings: the files thread handles one per output file
    data: bytes | None = None
    source: str | None = None

    def commit(self, made: set[str] | None = None) -> None:
        """Few system calls, little Python between them: this runs in a thread that must
        win the GIL back after each call while the event loop is busy."""
        if self.source is not None:
            parent = os.path.dirname(self.path)
            if made is None or parent not in made:
                os.makedirs(parent, exist_ok=True)
                if made is not None:
                    made.add(parent)
            os.replace(self.source, self.path)
            return
        write_atomic(self.path, self.data or b"", made=made)
