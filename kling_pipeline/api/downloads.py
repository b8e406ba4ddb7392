"""Fetching output files: redirects followed, type and size checked, hashed while streaming,
kept in memory — or spilled to a temp file past ``SPILL_BYTES`` — for the writer thread.

No API key goes with these requests: files live on other hosts in production.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import anyio
import anyio.to_thread

from .apierrors import DownloadFailed, translate_transport
from .transports import Response, Wire, closing

__all__ = ["MAX_DOWNLOAD_BYTES", "Downloaded", "FileFetcher"]

MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024
SPILL_BYTES = 1024 * 1024
MAX_REDIRECTS = 5
USER_AGENT = "kling-pipeline"


@dataclass(frozen=True, slots=True)
class Downloaded:
    """A fetched file: its bytes, or (when large) the temp file holding them."""

    data: bytes | None
    spilled: Path | None
    sha256: str
    size: int
    content_type: str


class FileFetcher:
    """GETs output files over ``wire`` (``timeout``: seconds without progress)."""

    def __init__(self, wire: Wire, connect_timeout: float, timeout: float) -> None:
        self._wire, self._connect, self._timeout = wire, connect_timeout, timeout

    async def _send(self, uri: str) -> Response:
        return await self._wire.send("GET", uri, [(b"User-Agent", USER_AGENT.encode())], None,
                                     connect_timeout=self._connect, read_timeout=self._timeout)

    async def _fetch(self, uri: str, name: str) -> Response:
        """GET a file, following up to ``MAX_REDIRECTS`` redirects (file hosts and CDNs use them).
        No API key goes with these requests: they are not API calls."""
        for _ in range(MAX_REDIRECTS + 1):
            response = await self._send(uri)
            location = response.header("location")
            if response.status not in (301, 302, 303, 307, 308) or not location:
                return response
            await response.aclose()
            uri = urllib.parse.urljoin(uri, location)
        raise DownloadFailed(f"download {name}: more than {MAX_REDIRECTS} redirects")

    async def download(self, uri: str, name: str, spill_dir: Path, *, max_bytes: int = MAX_DOWNLOAD_BYTES,
                       accept: tuple[str, ...] = ("image/",), kind: str = "image") -> Downloaded:
        """Fetch ``uri`` (an output file), checking its type (one of ``accept``, the content
        types a file of ``kind`` may have; empty: any) and size, and hashing it.

        The bytes stay in memory (images are small) and are put in place later by the
        manifest's writer thread; past ``SPILL_BYTES`` they go to a temp file in
        ``spill_dir`` instead, written from a worker thread. ``name`` is for messages.
        """
        spool = _Spool(spill_dir, name)
        digest = hashlib.sha256()
        size = 0
        try:
            with translate_transport(f"download {name}"):
                response = await self._fetch(uri, name)
                async with closing(response):
                    if response.status >= 400:
                        raise DownloadFailed(f"download {name}: HTTP {response.status}")
                    ctype = (response.header("content-type") or "").split(";")[0].strip().lower()
                    if accept and not ctype.startswith(accept):
                        article = "an" if kind[:1] in "aeiou" else "a"
                        raise DownloadFailed(f"download {name}: expected {article} {kind}, got {ctype or 'no type'}",
                                             permanent=True)
                    declared = response.header("content-length")
                    if declared and declared.isdigit() and int(declared) > max_bytes:
                        raise DownloadFailed(f"download {name}: {declared} bytes is over the {max_bytes} cap",
                                             permanent=True)
                    async for chunk in response.aiter():
                        size += len(chunk)
                        if size > max_bytes:
                            raise DownloadFailed(f"download {name}: more than {max_bytes} bytes", permanent=True)
                        digest.update(chunk)
                        await spool.add(chunk)
            if size == 0:
                raise DownloadFailed(f"download {name}: empty file")
            return await spool.finish(digest.hexdigest(), size, ctype)
        except BaseException:
            if spool.tmp_used:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(spool.discard)
            raise


class _Spool:
    """A download in memory, spilling to a temp file (from a worker thread) past ``SPILL_BYTES``."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory, self.name = directory, name
        self.tmp: Path | None = None  # named on the first spill: most downloads never need it
        self.buf = bytearray()
        self.fh: BinaryIO | None = None
        self.tmp_used = False

    def _spill(self, data: bytes) -> None:
        if self.fh is None:
            self.tmp = self.directory / f".{self.name.replace('/', '_')}.{os.getpid()}.{secrets.token_hex(4)}.part"
            self.tmp.parent.mkdir(parents=True, exist_ok=True)
            self.fh = self.tmp.open("wb")
            self.tmp_used = True
        self.fh.write(data)

    async def add(self, chunk: bytes) -> None:
        self.buf += chunk
        if len(self.buf) >= SPILL_BYTES:
            data, self.buf = bytes(self.buf), bytearray()
            await anyio.to_thread.run_sync(self._spill, data)

    def _close(self, rest: bytes) -> None:
        self._spill(rest)
        assert self.fh is not None
        self.fh.close()

    async def finish(self, sha256: str, size: int, content_type: str) -> Downloaded:
        if not self.tmp_used:
            return Downloaded(bytes(self.buf), None, sha256, size, content_type)
        await anyio.to_thread.run_sync(self._close, bytes(self.buf))
        return Downloaded(None, self.tmp, sha256, size, content_type)

    def discard(self) -> None:
        if self.fh is not None:
            self.fh.close()
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)


