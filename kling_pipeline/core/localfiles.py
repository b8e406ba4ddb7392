"""Checks of reference images named in a recipe, done at plan time.

A value in a file field (``format: file`` in the app schema) is a URL (passed
through), a ``data:`` URI (decoded and checked, uploaded before use), or a
local path relative to the recipe file that wrote it. Local files must exist,
be readable, be a real PNG/JPEG (by magic bytes), respect the size limit and,
where the header tells, the pixel and aspect-ratio limits. Limits come from the
schema's ``x-file`` block.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import os
import re
import stat
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "FileChecker", "FileLimits", "FileProblem", "FileResolver", "LocalFile", "ReadProblem", "check_bytes",
    "check_data_uri", "check_path", "classify", "decode_data_uri", "image_size", "read_regular",
]

_DATA_URI = re.compile(r"^data:([^;,]+)?(;base64)?,(.*)$", re.DOTALL)
_NO_LIMIT = 1 << 40  # no size limit given: read what there is


class FileProblem(Exception):
    """A named file fails a check; the message says which and why."""


@dataclass(frozen=True, slots=True)
class FileLimits:
    media_types: tuple[str, ...] = field(default=("image/png", "image/jpeg"))
    max_bytes: int | None = None
    min_width: int | None = None
    min_height: int | None = None
    min_aspect_ratio: float | None = None
    max_aspect_ratio: float | None = None

    @classmethod
    def from_schema(cls, block: Mapping[str, Any] | None) -> FileLimits:
        b = block or {}
        return cls(
            media_types=tuple(b.get("media_types", ("image/png", "image/jpeg"))),
            max_bytes=b.get("max_bytes"),
            min_width=b.get("min_width"),
            min_height=b.get("min_height"),
            min_aspect_ratio=b.get("min_aspect_ratio"),
            max_aspect_ratio=b.get("max_aspect_ratio"),
        )


@dataclass(frozen=True, slots=True)
class LocalFile:
    """A checked local file (or decoded data: URI): what the run uploads."""

    path: Path | None  # None for a data: URI
    sha256: str
    size: int
    media_type: str
    width: int | None
    height: int | None


def classify(value: str) -> str:
    """``"url"``, ``"data"`` or ``"path"``."""
    lowered = value[:8].lower()
    if lowered.startswith(("http://", "https://")):
        return "url"
    if lowered.startswith("data:"):
        return "data"
    return "path"


def image_size(head: bytes) -> tuple[str, int | None, int | None] | None:
    """Media type and pixel size from an image's first bytes; None if not PNG/JPEG."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        if len(head) >= 24 and head[12:16] == b"IHDR":
            w, h = struct.unpack(">II", head[16:24])
            return "image/png", w, h
        return "image/png", None, None
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg", *_jpeg_size(head)
    return None


def _jpeg_size(data: bytes) -> tuple[int | None, int | None]:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + length
    return None, None


class ReadProblem(Exception):
    """A file cannot be read as a regular file within a size: ``kind`` says why (``missing``,
    ``directory``, ``special``, ``loop``, ``nul``, ``too_large``, ``error``)."""

    def __init__(self, kind: str, detail: str = "", size: int = 0) -> None:
        super().__init__(detail or kind)
        self.kind, self.detail, self.size = kind, detail, size


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, or ``ReadProblem``. A pipe
    or a device is refused before it is read (it could block, or never end), and the
    read stops one byte past the limit whatever the file's size says."""
    if "\x00" in str(path):
        raise ReadProblem("nul")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise ReadProblem("missing") from None
    except OSError as exc:
        kind = "loop" if exc.errno == errno.ELOOP else "directory" if exc.errno == errno.EISDIR else "error"
        raise ReadProblem(kind, exc.strerror or str(exc)) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ReadProblem("directory")
        if not stat.S_ISREG(info.st_mode):
            raise ReadProblem("special")
        if info.st_size > limit:
            raise ReadProblem("too_large", size=info.st_size)
        chunks, total = [], 0
        while total <= limit and (chunk := os.read(fd, min(1 << 20, limit + 1 - total))):
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise ReadProblem("error", exc.strerror or str(exc)) from None
    finally:
        os.close(fd)
    if total > limit:
        raise ReadProblem("too_large", size=total)
    return b"".join(chunks)


def check_bytes(data: bytes, limits: FileLimits, what: str) -> tuple[str, int | None, int | None]:
    """Check a whole image's bytes against ``limits``: its kind, size and pixel size,
    and that it is all there (see ``imagecheck``). Raises ``FileProblem``."""
    if limits.max_bytes is not None and len(data) > limits.max_bytes:
        raise FileProblem(_too_large(what, len(data), limits.max_bytes))
    allowed = " or ".join(t.split("/")[-1].upper() for t in limits.media_types)
    from .imagecheck import NotAnImage, inspect_image  # (only a plan with image files needs it)

    try:
        info = inspect_image(data)
    except NotAnImage as exc:
        raise FileProblem(f"{what} {exc}") from None
    if info is None or info.media_type not in limits.media_types:
        raise FileProblem(f"{what} is not a {allowed} image (checked by its first bytes)")
    w, h = info.width, info.height
    if (limits.min_width and w < limits.min_width) or (limits.min_height and h < limits.min_height):
        raise FileProblem(f"{what} is {w}x{h} px; width and height must be at least "
                          f"{limits.min_width}x{limits.min_height} px")
    ratio = w / h
    lo, hi = limits.min_aspect_ratio, limits.max_aspect_ratio
    if (lo is not None and ratio < lo) or (hi is not None and ratio > hi):
        raise FileProblem(f"{what} has aspect ratio {w}:{h} ({ratio:.2f}); it must be between "
                          f"{lo:g} and {hi:g} (1:2.5 .. 2.5:1)")
    return info.media_type, w, h


def _too_large(what: str, size: int, limit: int) -> str:
    return f"{what} is {size:,} bytes, more than the {limit / (1024 * 1024):g} MB allowed"


def check_path(path: Path, shown: str, limits: FileLimits) -> LocalFile:
    """Check a local image file; raise ``FileProblem`` saying what is wrong."""
    try:
        data = read_regular(path, limits.max_bytes if limits.max_bytes is not None else _NO_LIMIT)
    except ReadProblem as exc:
        raise FileProblem({
            "missing": f"file not found: {shown}",
            "directory": f"not a regular file: {shown}",
            "special": f"not a regular file: {shown} (a pipe or a device?)",
            "loop": f"cannot read {shown}: too many levels of symbolic links (a symlink loop?)",
            "nul": f"the file name {shown!r} holds a NUL character",
            "too_large": _too_large(shown, exc.size, limits.max_bytes or 0),
        }.get(exc.kind, f"cannot read {shown}: {exc.detail.lower() if exc.detail else exc.kind}")) from None
    media, w, h = check_bytes(data, limits, shown)
    return LocalFile(Path(os.path.realpath(path)), hashlib.sha256(data).hexdigest(), len(data), media, w, h)


def decode_data_uri(value: str) -> tuple[str, bytes]:
    match = _DATA_URI.match(value)
    if not match or not match.group(2):
        raise FileProblem("data: URI must be base64-encoded ('data:image/png;base64,...')")
    try:
        data = base64.b64decode(match.group(3), validate=True)
    except (binascii.Error, ValueError):
        raise FileProblem("data: URI holds invalid base64") from None
    return match.group(1) or "application/octet-stream", data


def check_data_uri(value: str, limits: FileLimits) -> LocalFile:
    _declared, data = decode_data_uri(value)
    media, w, h = check_bytes(data, limits, "the data: URI image")
    return LocalFile(None, hashlib.sha256(data).hexdigest(), len(data), media, w, h)


FileChecker = Callable[[Path, str, FileLimits], LocalFile]


class FileResolver:
    """Checks each named file once per plan (a sweep names the same few files many times)."""

    def __init__(self, limits: Mapping[str, FileLimits], check_file: FileChecker) -> None:
        self.limits = limits
        self.check_file = check_file
        self.cache: dict[Path, LocalFile | FileProblem] = {}

    def resolve(self, field_: str, value: str, origin_file: str) -> LocalFile | FileProblem:
        """A data: URI, or a path relative to the file that wrote it (``origin_file``)."""
        limits = self.limits[field_]
        if not value.strip():
            return FileProblem("is an empty file name (write null, or leave the field out, for no file)")
        if classify(value) == "data":
            try:
                return check_data_uri(value, limits)
            except FileProblem as exc:
                return exc
        path = Path(os.path.dirname(origin_file)) / value
        found = self.cache.get(path)
        if found is None:
            try:
                found = self.check_file(path, os.path.normpath(path), limits)
            except FileProblem as exc:
                found = exc
            self.cache[path] = found
        return found
