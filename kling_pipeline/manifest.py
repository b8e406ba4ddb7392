"""The write-ahead manifest: an append-only, fsync'd JSONL journal per output directory.

Every paid action is bracketed by records: ``intent`` (before ``POST /apps/run``,
with the input and the reserved cost), ``accepted`` / ``adopted`` (the task id),
``unknown`` / ``not_created`` (what a failed submit means), and ``done`` (the
terminal state, outputs, billed cost). Replaying the records gives each job's
state, the spend so far and the upload cache; that is how a run resumes.

Writes are group-committed: concurrent writers share one ``write`` + ``fsync``
(done in a worker thread), and each ``append`` returns only once its record is
durable. A line cut short by kill -9 is dropped (and the file trimmed) on open.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from .errors import KlingError

__all__ = [
    "MANIFEST_NAME",
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
            raise ManifestError(f"{path}:{number}: corrupt manifest line (not JSON); the file was changed "
                                "by hand? Move it away to start over (spend recorded in it is then forgotten)") from None
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
    """Append records durably; concurrent appends share one fsync."""

    def __init__(self, path: Path) -> None:
        new = not path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if new:
            _fsync_dir(path.parent)
        self._pending: list[bytes] = []
        self._batch = anyio.Event()
        self._flushing = False
        self._failed: ManifestError | None = None
        self.writes = 0  # fsync'd batches (for benchmarks)

    def _write_sync(self, data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            os.fsync(self._fd)
        except OSError as exc:
            raise ManifestError(f"{self.path}: cannot write the manifest: {exc.strerror or exc}") from None

    async def append(self, record: Mapping[str, Any]) -> None:
        """Write ``record``; return once it is on disk."""
        if self._failed is not None:
            raise self._failed
        self._pending.append(encode(record))
        batch = self._batch
        if self._flushing:
            await batch.wait()
            if self._failed is not None:
                raise self._failed
            return
        self._flushing = True
        try:
            while self._pending:
                data, self._pending = b"".join(self._pending), []
                done, self._batch = self._batch, anyio.Event()
                try:
                    await anyio.to_thread.run_sync(self._write_sync, data)
                    self.writes += 1
                except ManifestError as exc:
                    self._failed = exc
                    raise
                finally:
                    done.set()
        finally:
            self._flushing = False

    def append_now(self, record: Mapping[str, Any]) -> None:
        """Synchronous append (for shutdown paths outside the event loop's care)."""
        self._write_sync(encode(record))

    def close(self) -> None:
        """Write whatever is still pending (its writers were cancelled) and close."""
        if self._pending and self._failed is None:
            data, self._pending = b"".join(self._pending), []
            try:
                self._write_sync(data)
            finally:
                self._batch.set()
        os.close(self._fd)


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

    @property
    def in_flight(self) -> bool:
        return self.state == "submitted"

    @property
    def unresolved(self) -> bool:
        """A submit whose outcome is not known: intent without answer, or a lost answer."""
        return self.state in ("intent", "unknown")


@dataclass(slots=True)
class ManifestState:
    jobs: dict[str, JobState] = field(default_factory=dict)
    uploads: dict[str, str] = field(default_factory=dict)  # sha256 -> uri
    runs: list[dict[str, Any]] = field(default_factory=list)
    webhook_token: str | None = None

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

    @classmethod
    def replay(cls, records: Iterable[Mapping[str, Any]]) -> ManifestState:
        state = cls()
        for r in records:
            state.apply(r)
        return state

    def claimed_task_ids(self) -> set[str]:
        return {t for j in self.jobs.values() for t in j.task_ids}

    def __iter__(self) -> Iterator[JobState]:
        return iter(self.jobs.values())
