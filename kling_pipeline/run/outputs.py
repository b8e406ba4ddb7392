"""Saving a completed task's images, each with a provenance sidecar.

Names come from the plan (the recipe's ``output.filename``), plus the
extension of the downloaded type. Files are written to a temp name and
renamed; the sidecar ``<image>.json`` says where the image came from.
"""

from __future__ import annotations

import json
import time
from pathlib import Path, PurePosixPath

from ..api.apierrors import ApiError, DownloadFailed
from ..api.client import Downloaded
from ..api.retry import DOWNLOAD, attempts
from ..api.wire import TaskView, output_files
from ..core.money import usd_decimal
from ..store.journal import FileWrite
from ..store.records import OutputEntry
from .context import RunContext
from .work import Work

__all__ = ["IMAGE_SUFFIXES", "save_outputs", "sidecar_path"]

IMAGE_SUFFIXES = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif"}


def sidecar_path(image: Path) -> Path:
    return image.with_name(image.name + ".json")


def _name(base: str, index: int, content_type: str | None, uri: str) -> str:
    """``base`` (+ ``-index`` after the first image) + the extension of the type."""
    stem = base if index == 0 else f"{base}-{index}"
    if PurePosixPath(stem).suffix.lower() in (".png", ".jpg", ".jpeg", ".webp", ".gif"):
        return stem
    ext = IMAGE_SUFFIXES.get((content_type or "").lower())
    ext = ext or PurePosixPath(uri.split("?", maxsplit=1)[0]).suffix.lower()
    return stem + (ext if ext in (".png", ".jpg", ".jpeg", ".webp", ".gif") else ".png")


async def _download(ctx: RunContext, uri: str, name: str) -> Downloaded:
    got: Downloaded | None = None
    async for attempt in attempts(DOWNLOAD):  # a download costs nothing: safe to repeat
        with attempt:
            got = await ctx.api.download(uri, name, ctx.out_dir, max_bytes=ctx.options.max_download_bytes)
    assert got is not None
    return got


async def save_outputs(ctx: RunContext, w: Work, view: TaskView,
                       billed: int) -> tuple[list[OutputEntry], list[FileWrite]]:
    """Download every image of a completed task.

    Returns the manifest's ``outputs`` entries and the files to write (each image and
    its provenance sidecar); the caller hands both to the manifest writer together
    with the ``done`` record, so they land on disk in one batch, files first.
    """
    files = output_files(view.output)
    if not files:
        raise DownloadFailed(f"task {view.id} completed without an image in its output")
    job = ctx.state.jobs.get(w.key)
    intent = job.intent if job is not None else None
    saved: list[OutputEntry] = []
    writes: list[FileWrite] = []
    for index, (uri, ctype) in enumerate(files):
        rel = _name(w.output_name, index, ctype, uri)
        dest = ctx.out_dir / rel
        started = time.time()
        try:
            got = await _download(ctx, uri, rel)
        except ApiError as exc:
            raise DownloadFailed(str(exc)) from None
        side = {
            "image": rel,
            "sha256": got.sha256,
            "size": got.size,
            "content_type": got.content_type,
            "image_index": index,
            "job": {"id": w.job_id, "key": w.key, "combination": dict(w.labels)},
            "recipe": ctx.provenance.get("recipe"),
            "git": ctx.provenance.get("git"),
            "app": ctx.app_ref,
            "input": None if intent is None else dict(intent.input),
            "input_files": {} if intent is None else dict(intent.files),
            "task_id": view.id,
            "billed_usd": usd_decimal(billed),
            "timings": {"submitted_at": None if intent is None else intent.at, "downloaded_at": time.time(),
                        "download_seconds": round(time.time() - started, 3)},
            "source_uri": uri,
            "run_id": ctx.run_id,
            "tool": ctx.provenance.get("tool"),
        }
        writes.append(FileWrite(dest, got.data, got.spilled))
        # Compact JSON: json's indenting encoder is pure Python and costs more than the download.
        writes.append(FileWrite(sidecar_path(dest), (json.dumps(side, ensure_ascii=False) + "\n").encode()))
        saved.append(OutputEntry(rel, got.sha256, got.size, got.content_type, uri, rel + ".json"))
    return saved, writes
