"""A cache of paid results shared by every output directory on this machine, content-keyed.

A job whose exact request (its content key: app, input with local files by hash,
repeat index) was already paid and downloaded anywhere is served from here — its files
linked (or copied across file systems) — instead of being paid again: ``--out elsewhere``
no longer means paying twice. Like DVC's cache, what it holds is addressed by content:

    <root>/entries/<key[:2]>/<key>.json   what the job was and what it cost, its files' hashes
    <root>/files/<sha[:2]>/<sha256>       each file once, by its content (shared by entries)

A file is linked in (copied across file systems) before its entry is written, and an entry
is written to a temp name and renamed into place, so a crash leaves no entry without its
files; every file is checked against its sha256 before it is used, and a damaged entry is
dropped. The cache is bounded: past ``max_bytes``, the least recently used entries go (an
entry's modification time is its last use), and then the files no entry names. A put costs
a link per new file and one small file write: it runs on the run's files thread.
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

__all__ = ["DEFAULT_MAX_BYTES", "CachePut", "CachedFile", "Entry", "ResultCache", "default_max_bytes", "default_root"]

DEFAULT_MAX_BYTES = 5 * 1024**3
ORPHAN_AGE = 600.0  # seconds before a file no entry names may go (a put links files first)


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
    files_dir: Path

    def path_of(self, f: CachedFile) -> Path:
        return self.files_dir / f.sha256[:2] / f.sha256


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
        self.entries_dir = root / "entries"
        self.files_dir = root / "files"
        self._made: set[str] = set()  # directories known to exist

    def entry_path(self, key: str) -> Path:
        return self.entries_dir / key[:2] / f"{key}.json"

    def _file(self, sha256: str) -> str:
        return f"{self.files_dir}/{sha256[:2]}/{sha256}"

    def _dir(self, path: str) -> None:
        parent = os.path.dirname(path)
        if parent not in self._made:
            os.makedirs(parent, exist_ok=True)
            self._made.add(parent)

    def keys(self) -> set[str]:
        """The keys of every entry (one directory listing per prefix; ``get`` checks the files)."""
        found: set[str] = set()
        try:
            prefixes = list(os.scandir(self.entries_dir))
        except OSError:
            return found
        for prefix in prefixes:
            if prefix.is_dir() and len(prefix.name) == 2:
                with contextlib.suppress(OSError):
                    found.update(e.name[:-5] for e in os.scandir(prefix.path)
                                 if e.name.endswith(".json") and not e.name.startswith("."))
        return found

    def get(self, key: str) -> Entry | None:
        """The entry for ``key`` with every file checked against its hash, or None (a damaged
        entry is removed, with its damaged file)."""
        path = self.entry_path(key)
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            files = tuple(CachedFile(str(f["sha256"]), int(f["size"]), str(f.get("content_type") or ""),
                                     str(f.get("name") or f["sha256"])) for f in meta["files"])
            entry = Entry(key, str(meta.get("app") or ""), meta.get("task_id"), int(meta.get("billed_microcents", 0)),
                          files, meta.get("raw_output"), self.files_dir)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)
            return None
        for f in files:
            file = entry.path_of(f)
            try:
                good = file.stat().st_size == f.size and _sha256(file) == f.sha256
            except OSError:
                good = False
            if not good:
                path.unlink(missing_ok=True)
                file.unlink(missing_ok=True)
                return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: evicted last
        return entry

    def put(self, key: str, app: str, task_id: str | None, billed: int, files: Sequence[tuple[Path, str, str]],
            raw_output: Any) -> None:
        """Store a paid result: ``files`` are (path, sha256, content type) of the job's saved files.
        Best effort: a cache that cannot be written never fails a run."""
        final = str(self.entry_path(key))
        try:
            if os.path.exists(final):
                return
            listed = []
            for path, sha256, ctype in files:
                target = self._file(sha256)
                self._dir(target)
                try:
                    os.link(path, target)  # same file system: no copy
                except FileExistsError:
                    pass  # the same content, from another job (checked when served)
                except OSError:
                    tmp = f"{target}.{os.getpid()}.tmp"
                    shutil.copyfile(path, tmp)
                    os.replace(tmp, target)
                listed.append({"sha256": sha256, "size": os.stat(target).st_size, "content_type": ctype,
                               "name": path.name})
            meta = {"key": key, "app": app, "task_id": task_id, "billed_microcents": billed, "files": listed,
                    "raw_output": raw_output, "stored_at": time.time()}
            self._dir(final)
            tmp = f"{os.path.dirname(final)}/.{key}.{os.getpid()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, json.dumps(meta, ensure_ascii=False).encode())
            finally:
                os.close(fd)
            os.replace(tmp, final)
        except OSError:
            return

    def serve(self, entry: Entry, f: CachedFile, dest: Path | str) -> None:
        """Put a cached file at ``dest``: a hard link when it can, else a copy (through a temp name)."""
        dest = Path(dest)
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
        """Drop least recently used entries until the cache is within ``max_bytes``, then the
        files no entry names any more (once per run: it looks at every entry)."""
        entries: list[tuple[float, int, Path, list[str]]] = []
        refs: dict[str, int] = {}
        for path in self.entries_dir.glob("??/*.json"):
            try:  # another run may be evicting too
                st = path.stat()
                shas = [str(f["sha256"]) for f in json.loads(path.read_bytes())["files"]]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            entries.append((st.st_mtime, st.st_size, path, shas))
            for sha in shas:
                refs[sha] = refs.get(sha, 0) + 1
        sizes: dict[str, int] = {}
        old = time.time() - ORPHAN_AGE
        for file in self.files_dir.glob("??/*"):
            with contextlib.suppress(OSError):
                st = file.stat()
                if file.name not in refs and st.st_ctime < old and not file.name.endswith(".tmp"):
                    file.unlink()  # named by no entry (a crash between link and entry, or evicted)
                    continue
                sizes[file.name] = st.st_size
        total = sum(e[1] for e in entries) + sum(sizes.values())
        for _, size, path, shas in sorted(entries):
            if total <= self.max_bytes:
                break
            with contextlib.suppress(OSError):
                path.unlink()
            total -= size
            for sha in shas:
                refs[sha] -= 1
                if refs[sha] == 0 and sha in sizes:
                    with contextlib.suppress(OSError):
                        os.unlink(self._file(sha))
                    total -= sizes.pop(sha)


@dataclass(frozen=True, slots=True)
class CachePut:
    """A put done by the run's files thread (after the job's files are in place), so the event
    loop neither waits for it nor pays a thread hop; ``path`` names it in a write error."""

    cache: ResultCache
    key: str
    app: str
    task_id: str | None
    billed: int
    files: tuple[tuple[Path, str, str], ...]
    raw_output: Any

    @property
    def path(self) -> str:
        return str(self.cache.root)

    def commit(self, made: set[str] | None = None) -> None:
        self.cache.put(self.key, self.app, self.task_id, self.billed, self.files, self.raw_output)
