"""Uploads: ``POST /files`` reserves files and hands out signed upload URLs; ``PUT`` stores bytes."""

from __future__ import annotations

import hashlib
from typing import Any

from .asgi import Request, send_bytes, send_json
from .problems import Problem
from .state import EmulatorState

__all__ = ["create_files", "put_upload"]

MAX_FILES_PER_REQUEST = 50


def _optional(item: dict[str, Any], name: str, kind: type | tuple[type, ...], index: int) -> Any:
    value = item.get(name)
    if value is not None and ((isinstance(value, bool) and kind is not bool) or not isinstance(value, kind)):
        raise Problem(400, "invalid_request", "Bad file description", f"files[{index}].{name} has the wrong type")
    return value


async def create_files(st: EmulatorState, req: Request, key: str) -> None:
    body = await req.json_object(st.cfg.max_json_bytes)
    files = body.get("files")
    if not isinstance(files, list) or not files or len(files) > MAX_FILES_PER_REQUEST:
        raise Problem(
            400,
            "invalid_request",
            "Bad upload request",
            f"'files' must be a list of 1 to {MAX_FILES_PER_REQUEST} file descriptions",
        )
    stamp = st.clock.stamp(st.clock.now())
    created = []
    for i, item in enumerate(files):
        if not isinstance(item, dict):
            raise Problem(400, "invalid_request", "Bad file description", f"files[{i}] must be an object")
        size = _optional(item, "size", int, i)
        if size is not None and not 0 <= size <= st.cfg.max_upload_bytes:
            raise Problem(
                413,
                "payload_too_large",
                "File too large",
                f"files[{i}].size is {size} bytes; uploads are limited to {st.cfg.max_upload_bytes} bytes",
            )
        stored = st.files.reserve(
            key_id=key,
            filename=_optional(item, "filename", str, i) or "upload",
            content_type=_optional(item, "content_type", str, i) or "application/octet-stream",
            declared_size=size,
            public=_optional(item, "public", bool, i),
            path=_optional(item, "path", str, i),
            stamp=stamp,
        )
        entry = stored.describe(req.base_url)
        entry["upload_url"] = f"{req.base_url}/uploads/{stored.id}?token={stored.upload_token}"
        created.append(entry)
    await send_json(req.send, {"data": created})


async def put_upload(st: EmulatorState, req: Request, key: str) -> None:
    """The signed upload URL: no Authorization header, the token in the query string is the proof."""
    stored = st.files.accept_upload(req.params["file_id"], req.query("token") or "")
    if stored is None:
        raise Problem(403, "access_denied", "Access denied", "the upload URL is invalid")
    data = await req.body(st.cfg.max_upload_bytes)
    if stored.declared_size is not None and len(data) != stored.declared_size:
        raise Problem(
            400,
            "invalid_request",
            "Size mismatch",
            f"declared {stored.declared_size} bytes at POST /files, received {len(data)}",
        )
    stored.data = data
    content_type = req.header(b"content-type")
    if content_type:
        stored.content_type = content_type
    etag = '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'
    await send_bytes(req.send, 200, b"", "text/plain", [("etag", etag)])
