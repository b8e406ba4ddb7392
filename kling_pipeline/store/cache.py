"""A cache of paid results shared by every output directory on this machine, content-keyed.

A job whose exact request (its content key: app, input with local files by hash,
repeat index) was already paid and downloaded anywhere is served from here — its files
linked (or copied across file systems) — instead of being paid again: ``--out elsewhere``
no longer means paying twice. Like DVC's cache, entries are addressed by what they hold:

    <root>/<key[:2]>/<key>/entry.json     what the job was and what it cost, the files' hashes
    <root>/<key[:2]>/<key>/<sha256>       each file, by its content

An entry is written to a temp directory and renamed into place (a crash leaves no half
entry), and every file is checked against its sha256 before it is used; a damaged entry
is dropped. The cache is bounded: past ``max_bytes``, the least recently used entries go.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import UsageError

__all__ = ["DEFAULT_MAX_BYTES", "CachedFile", "Entry", "ResultCache", "default_max_bytes", "default_root"]

DEFAULT_MAX_BYTES = 5 * 1024**3
ENTRY = "entry.json"


def default_root() -> Path:
    """``$KLING_PIPELINE_CACHE``, else the user's cache directory (XDG)."""
    explicit = os.environ.get("KLING_PIPELINE_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kling-pipeline" / "results"


def default_max_bytes() -> int:
    """``$KLING_PIPELINE_CACHE_MAX_GB`` (a positive number of GB), else 5 GB."""
    raw = os.environ.get("KLING_PIPELINE_CACHE_MAX_GB")
    if not raw:
        return DEFAULT_MAX_BYTES
    try:
        gb = float(raw)
    except ValueError:
        gb = -1.0
    if not 0 < gb < 1e6:
        raise UsageError(f"KLING_PIPELINE_CACHE_MAX_GB={raw!r}: expected a positive number of GB, e.g. 5 or 0.5")
    return int(gb * 1024**3)


@dataclass(frozen=True, slots=True)
class CachedFile:
    sha256: str
    size: int
    content_type: str
    name: str  # the file name it had where it was made (its extension is what matters)


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    app: str
    task_id: str | None
    billed_microcents: int  # what it cost when it was paid (serving it costs nothing)
    files: tuple[CachedFile, ...]
    raw_output: Any
    directory: Path

    def path_of(self, f: CachedFile) -> Path:
        return self.directory / f.sha256


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ResultCache:
    def __init__(self, root: Path, max_bytes: int | None = None) -> None:
        self.root = root
        self.max_bytes = default_max_bytes() if max_bytes is None else max_bytes

    def _dir(self, key: str) -> Path:
        return self.root / key[:2] / key

    def keys(self) -> set[str]:
        """The keys of every entry (one directory listing per prefix; ``get`` checks the files)."""
        found: set[str] = set()
        try:
            prefixes = list(os.scandir(self.root))
        except OSError:
            return found
        for prefix in prefixes:
            if prefix.is_dir() and len(prefix.name) == 2:
                with contextlib.suppress(OSError):
                    found.update(e.name for e in os.scandir(prefix.path) if not e.name.startswith("."))
        return found

    def get(self, key: str) -> Entry | None:
        """The entry for ``key`` with every file checked against its hash, or None (a damaged entry is removed)."""
        directory = self._dir(key)
        try:
            meta = json.loads((directory / ENTRY).read_text(encoding="utf-8"))
            files = tuple(CachedFile(str(f["sha256"]), int(f["size"]), str(f.get("content_type") or ""),
                                     str(f.get("name") or f["sha256"])) for f in meta["files"])
            for f in files:
                path = directory / f.sha256
                if path.stat().st_size != f.size or _sha256(path) != f.sha256:
                    raise ValueError(f"{path}: damaged")
            entry = Entry(key, str(meta.get("app") or ""), meta.get("task_id"), int(meta.get("billed_microcents", 0)),
                          files, meta.get("raw_output"), directory)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            self._drop(directory)
            return None
        with contextlib.suppress(OSError):
            os.utime(directory / ENTRY)  # recently used: evicted last
        return entry

    def put(self, key: str, app: str, task_id: str | None, billed: int, files: Sequence[tuple[Path, str, str]],
            raw_output: Any) -> None:
        """Store a paid result: ``files`` are (path, sha256, content type) of the job's saved files.
        Best effort: a cache that cannot be written never fails a run."""
        directory = self._dir(key)
        if directory.exists():
            return
        tmp = directory.with_name(f".{key}.{os.getpid()}.tmp")
        try:
            tmp.mkdir(parents=True, exist_ok=True)
            listed = []
            for path, sha256, ctype in files:
                target = tmp / sha256
                if not target.exists():
                    try:
                        os.link(path, target)  # same file system: no copy
                    except OSError:
                        shutil.copyfile(path, target)
                listed.append({"sha256": sha256, "size": target.stat().st_size, "content_type": ctype,
                               "name": path.name})
            meta = {"key": key, "app": app, "task_id": task_id, "billed_microcents": billed, "files": listed,
                    "raw_output": raw_output, "stored_at": time.time()}
            (tmp / ENTRY).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
            os.rename(tmp, directory)
        except OSError:
            self._drop(tmp)

    def serve(self, entry: Entry, f: CachedFile, dest: Path) -> None:
        """Put a cached file at ``dest``: a hard link when it can, else a copy (through a temp name)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        try:
            os.link(entry.path_of(f), tmp)
        except OSError:
            shutil.copyfile(entry.path_of(f), tmp)
        os.replace(tmp, dest)

    def evict(self) -> None:
        """Drop least recently used entries until the cache is within ``max_bytes`` (once per run:
        it looks at every entry)."""
        entries = []
        total = 0
        for meta in self.root.glob("??/*/" + ENTRY):
            directory = meta.parent
            try:  # another run may be evicting too
                size = sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
                entries.append((meta.stat().st_mtime, size, directory))
            except OSError:
                continue
            total += size
        for _, size, directory in sorted(entries):
            if total <= self.max_bytes:
                break
            self._drop(directory)
            total -= size

    @staticmethod
    def _drop(directory: Path) -> None:
        shutil.rmtree(directory, ignore_errors=True)
