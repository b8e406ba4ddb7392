"""The write-ahead manifest: an append-only, fsync'd JSONL journal per output directory.

Every paid action is bracketed by records: ``intent`` (before ``POST /apps/run``,
with the input and the reserved cost), ``accepted`` / ``adopted`` (the task id),
``unknown`` / ``not_created`` (what a failed submit means), and ``done`` (the
terminal state, outputs, billed cost). Replaying the records gives each job's
state, the spend so far and the upload cache; that is how a run resumes.

Writes go through one writer thread, in order, one ``write`` + ``fsync`` per
batch; only ``intent`` records are waited for (see ``Journal``). A line cut
short by kill -9 is dropped (and the file trimmed) on open.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import KlingError

__all__ = [
    "LOCK_NAME",
    "MANIFEST_NAME",
    "FileWrite",
    "JobState",
    "Journal",
    "LockError",
    "ManifestError",
    "ManifestState",
    "OutputLock",
    "read_records",
]

MANIFEST_NAME = "manifest.jsonl"
LOCK_NAME = ".kling-pipeline.lock"
TERMINAL = ("completed", "failed", "cancelled", "rejected")


class ManifestError(KlingError):
    """The manifest cannot be read or written."""


class LockError(KlingError):
    """Another run holds the output directory."""

    exit_code = 2


def read_records(path: Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """All complete records. A last line without its newline (a write cut by kill -9)
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


def encode(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode() + b"\n"


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
                _fsync_dir(path.parent)
        except OSError as exc:
            if fd >= 0:
                os.close(fd)
            raise ManifestError(f"{path}: cannot open the manifest: {exc.strerror or exc}") from None
        self._fd = fd
        self._failed: ManifestError | None = None
        self._dirs: set[Path] = set()  # directories known to exist (the files thread's own)
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

    def post(self, record: Mapping[str, Any], files: Sequence[FileWrite] = ()) -> None:
        """Queue ``files`` and ``record``; do not wait for the disk."""
        self._check()
        for write in files:
            self._files.put((write, None))
        self._records.put((encode(record), None))

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

    async def append(self, record: Mapping[str, Any]) -> None:
        """Write ``record``; return once it is on disk."""
        self._check()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._records.put((encode(record), (loop, done)))
        await done

    def append_now(self, record: Mapping[str, Any]) -> None:
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


@dataclass(frozen=True, slots=True)
class FileWrite:
    """A file the writer thread puts in place: ``data`` to a temp name, then renamed
    (or an already-written temp file ``source`` renamed)."""

    path: Path
    data: bytes | None = None
    source: Path | None = None

    def commit(self, made: set[Path] | None = None) -> None:
        """Few system calls, little Python between them: this runs in a thread that must
        win the GIL back after each call while the event loop is busy."""
        parent = self.path.parent
        if made is None or parent not in made:
            parent.mkdir(parents=True, exist_ok=True)
            if made is not None:
                made.add(parent)
        if self.source is not None:
            os.replace(self.source, self.path)
            return
        tmp = f"{parent}/.{self.path.name}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(self.data or b"")
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, self.path)




def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(slots=True)
class JobState:
    """What the manifest says about one job (by content key), after replay."""

    key: str
    job_id: str = ""
    state: str = "new"  # new | intent | submitted | unknown | not_created | completed | failed | cancelled | rejected
    task_id: str | None = None
    reserved: int = 0  # outstanding reservation of the current attempt
    billed: int = 0  # settled over all attempts
    attempts: int = 0
    intent: dict[str, Any] = field(default_factory=dict)
    done: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    task_ids: list[str] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def slim(self) -> None:
        """Forget what a finished job no longer needs in memory (the raw output, the record
        bookkeeping; its input stays, for the provenance of an image fetched again):
        a run over many jobs then holds a few hundred bytes per finished job, not kilobytes."""
        self.intent = {k: v for k, v in self.intent.items() if k in _KEEP_INTENT}
        self.done = {k: v for k, v in self.done.items() if k in _KEEP_DONE}

    @property
    def in_flight(self) -> bool:
        return self.state == "submitted"

    @property
    def unresolved(self) -> bool:
        """A submit whose outcome is not known: intent without answer, or a lost answer."""
        return self.state in ("intent", "unknown")


_KEEP_INTENT = frozenset({"job", "output", "combination", "units", "reserved_microcents", "repeat_index", "at",
                          "input", "files"})
_KEEP_DONE = frozenset({"status", "task", "outputs", "billed_microcents", "error", "download_pending"})


@dataclass(slots=True)
class ManifestState:
    jobs: dict[str, JobState] = field(default_factory=dict)
    uploads: dict[str, str] = field(default_factory=dict)  # sha256 -> uri
    runs: list[dict[str, Any]] = field(default_factory=list)
    webhook_token: str | None = None
    slim: bool = False  # drop finished jobs' inputs and raw outputs (a run needs neither)

    @property
    def settled(self) -> int:
        return sum(j.billed for j in self.jobs.values())

    @property
    def reserved(self) -> int:
        return sum(j.reserved for j in self.jobs.values() if not j.terminal and j.state != "not_created")

    def job(self, key: str) -> JobState:
        state = self.jobs.get(key)
        if state is None:
            state = self.jobs[key] = JobState(key)
        return state

    def apply(self, r: Mapping[str, Any]) -> None:
        """Fold one record into the state (also used live, as records are written)."""
        kind = r.get("t")
        if kind == "upload":
            self.uploads[str(r["sha256"])] = str(r["uri"])
            return
        if kind == "run":
            self.runs.append(dict(r))
            if r.get("webhook_token"):
                self.webhook_token = str(r["webhook_token"])
            return
        key = r.get("key")
        if not isinstance(key, str):
            return
        j = self.job(key)
        if kind == "intent":
            j.job_id = str(r.get("job", j.job_id))
            j.state, j.task_id, j.error = "intent", None, None
            j.reserved = int(r.get("reserved_microcents", 0))
            j.attempts = int(r.get("attempt", j.attempts + 1))
            j.intent = dict(r)
        elif kind in ("accepted", "adopted"):
            j.state, j.task_id = "submitted", str(r["task"])
            j.task_ids.append(j.task_id)
        elif kind == "unknown":
            j.state, j.error = "unknown", str(r.get("reason", ""))
        elif kind == "not_created":
            j.state, j.reserved, j.error = "not_created", 0, str(r.get("reason", ""))
        elif kind == "done":
            j.state = str(r.get("status", "failed"))
            j.task_id = r.get("task") or j.task_id
            j.billed += int(r.get("billed_microcents", 0))
            j.reserved = 0
            j.error = r.get("error")
            j.done = dict(r)
            if r.get("job"):
                j.job_id = str(r["job"])
            if self.slim and j.state == "completed":
                j.slim()

    @classmethod
    def replay(cls, records: Iterable[Mapping[str, Any]], *, slim: bool = False) -> ManifestState:
        state = cls(slim=slim)
        for r in records:
            state.apply(r)
        return state

    def claimed_task_ids(self) -> set[str]:
        return {t for j in self.jobs.values() for t in j.task_ids}

    def __iter__(self) -> Iterator[JobState]:
        return iter(self.jobs.values())
