"""Local files in a request (reference images, ``data:`` URIs) become uploaded URIs,
once per content hash per output directory (the manifest remembers)."""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio

from ..api.client import ApiClient
from ..api.retry import UPLOAD, call
from ..core.errors import KlingError
from ..core.localfiles import LocalFile, decode_data_uri
from ..core.planning import RenderedJob
from ..store.records import Record, UploadRecord

__all__ = ["Uploader"]


class Uploader:
    def __init__(self, api: ApiClient, known: Mapping[str, str], record: Callable[[Record], Awaitable[None]]) -> None:
        """``known``: sha256 -> uri as the manifest has it (it grows as ``record`` folds uploads in)."""
        self._api = api
        self._known = known
        self._record = record
        self._busy: dict[str, anyio.Event] = {}

    async def prepare(self, rendered: RenderedJob) -> tuple[dict[str, Any], dict[str, Any]]:
        """The request as it is sent (local files and data: URIs replaced by uploaded URIs),
        and what the manifest keeps about each file."""
        request = dict(rendered.request)
        files: dict[str, Any] = {}
        for name, local in rendered.files.items():
            request[name] = await self.upload(local, request[name])
            files[name] = {"source": (local.path and str(local.path)) or "data:", "sha256": local.sha256,
                           "size": local.size, "uri": request[name]}
        return request, files

    async def upload(self, local: LocalFile, value: str) -> str:
        while True:
            uri = self._known.get(local.sha256)
            if uri:
                return uri
            busy = self._busy.get(local.sha256)
            if busy is None:
                break
            await busy.wait()
        done = self._busy[local.sha256] = anyio.Event()
        try:
            data, filename = await self._read(local, value)
            # an upload costs nothing: safe to repeat
            uploaded = await call(UPLOAD, lambda: self._api.upload(data, filename, local.media_type))
            await self._record(UploadRecord(local.sha256, uploaded, filename))
            return uploaded
        finally:
            del self._busy[local.sha256]
            done.set()

    @staticmethod
    async def _read(local: LocalFile, value: str) -> tuple[bytes, str]:
        if local.path is not None:
            data = await anyio.Path(local.path).read_bytes()
            if hashlib.sha256(data).hexdigest() != local.sha256:
                raise KlingError(f"{local.path} changed since the plan was made; run again to plan with it")
            return data, local.path.name
        _, data = decode_data_uri(value)
        return data, f"{local.sha256[:12]}{mimetypes.guess_extension(local.media_type) or ''}"
