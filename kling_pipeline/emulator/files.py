"""Stored files: uploads (``POST /files`` + ``PUT`` to a signed URL) and task outputs."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from .ident import new_id

__all__ = ["FileStore", "StoredFile"]


@dataclass(slots=True)
class StoredFile:
    id: str
    filename: str
    content_type: str
    created_at: str
    key_id: str | None = None
    task_id: str | None = None
    declared_size: int | None = None
    public: bool | None = None
    path: str | None = None
    upload_token: str = field(default="", repr=False)
    data: bytes | None = None
    render: Callable[[], bytes] | None = field(default=None, repr=False)
    """Draws the bytes of an output file on first use (then ``data`` keeps them)."""
    large: bool = False
    """Drawing is slow enough to belong in a worker thread."""
    drawn: Callable[[bytes], None] | None = field(default=None, repr=False)
    """Told the bytes once they are drawn (the store remembers its outputs' hashes)."""

    @property
    def ready(self) -> bool:
        return self.data is not None or self.render is not None

    async def content(self) -> bytes:
        if self.data is None and self.render is not None:
            render = self.render
            if self.large:
                data = await asyncio.get_running_loop().run_in_executor(None, render)
            else:
                data = render()
            self.data, self.render = data, None
            if self.drawn is not None:
                self.drawn(data)
        return self.data or b""

    def describe(self, base_url: str) -> dict[str, object]:
        return {
            "id": self.id,
            "uri": f"{base_url}/files/{self.id}",
            "filename": self.filename,
            "content_type": self.content_type,
            "size": len(self.data) if self.data is not None else self.declared_size,
            "path": self.path,
            "public": self.public,
            "created_at": self.created_at,
        }


class FileStore:
    def __init__(self) -> None:
        self._files: dict[str, StoredFile] = {}
        self._outputs: set[str] = set()  # sha256 of every output drawn so far

    def is_output(self, data: bytes) -> bool:
        """Whether ``data`` is one of the emulator's own outputs (fetched, then uploaded again)."""
        return hashlib.sha256(data).hexdigest() in self._outputs

    def _drawn(self, data: bytes) -> None:
        self._outputs.add(hashlib.sha256(data).hexdigest())

    def get(self, file_id: str) -> StoredFile | None:
        return self._files.get(file_id)

    def reserve(
        self,
        *,
        key_id: str,
        filename: str,
        content_type: str,
        declared_size: int | None,
        public: bool | None,
        path: str | None,
        stamp: str,
    ) -> StoredFile:
        """A file awaiting its bytes, with an unguessable upload token."""
        stored = StoredFile(
            id=new_id(),
            filename=filename,
            content_type=content_type,
            created_at=stamp,
            key_id=key_id,
            declared_size=declared_size,
            public=public,
            path=path,
            upload_token=secrets.token_urlsafe(24),
        )
        self._files[stored.id] = stored
        return stored

    def accept_upload(self, file_id: str, token: str) -> StoredFile | None:
        stored = self._files.get(file_id)
        if stored is None or not stored.upload_token or not hmac.compare_digest(stored.upload_token, token):
            return None
        return stored

    def add_output(
        self,
        *,
        task_id: str,
        filename: str,
        content_type: str,
        render: Callable[[], bytes],
        large: bool,
        stamp: str,
    ) -> StoredFile:
        stored = StoredFile(
            id=new_id(),
            filename=filename,
            content_type=content_type,
            created_at=stamp,
            task_id=task_id,
            render=render,
            large=large,
            drawn=self._drawn,
        )
        self._files[stored.id] = stored
        return stored

    def delete_task_files(self, task_id: str) -> int:
        doomed = [fid for fid, f in self._files.items() if f.task_id == task_id]
        for fid in doomed:
            del self._files[fid]
        return len(doomed)
