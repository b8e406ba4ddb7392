"""Saving a completed task's outputs, each with a provenance sidecar.

Which fields hold files, of what kind, and which hold values (text, JSON), comes from
the app's output schema (``core.outputs``). Names come from the plan (the recipe's
``output.filename``), plus the extension of the downloaded type; a value is saved beside
them as ``<name>-<field>.txt`` (text) or ``.json``. Files are written to a temp name and
renamed; the sidecar ``<file>.json`` says where the file came from and lists every
output of the job.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path, PurePosixPath
from typing import Any

from ..api.apierrors import ApiError, DownloadFailed
from ..api.client import Downloaded
from ..api.retry import DOWNLOAD, call
from ..api.wire import TaskView
from ..core.money import usd_decimal
from ..core.outputs import DEFAULT_SUFFIX, OutputFile, suffix_for
from ..store.cache import Entry
from ..store.journal import FileWrite
from ..store.records import OutputEntry
from .context import RunContext
from .work import Work

__all__ = ["file_name", "save_outputs", "serve_cached", "sidecar_path", "value_file"]

TEXT_TYPE = "text/plain; charset=utf-8"
JSON_TYPE = "application/json"
MEDIA_SUFFIXES = frozenset({*DEFAULT_SUFFIX.values(), ".jpg", ".jpeg", ".webp", ".gif", ".webm", ".mov", ".mp3"})


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def file_name(base: str, f: OutputFile, first: bool, fields: int) -> str:
    """The saved name of one output file: ``base`` for the first; then ``base-N`` within one
    field, ``base-FIELD[-N]`` when the app returns files in several fields; plus the
    extension of its type (unless the recipe's name already has one)."""
    if first:
        stem = base
    elif fields > 1:
        stem = f"{base}-{f.field.name}" + (f"-{f.index}" if f.index else "")
    else:
        stem = f"{base}-{f.index}"
    suffix = suffix_for(f.field.kind or "file", f.content_type, f.uri)
    if os.path.splitext(stem)[1].lower() == suffix:
        return stem
    return stem + suffix


async def _download(ctx: RunContext, f: OutputFile, name: str) -> Downloaded:
    return await call(DOWNLOAD, lambda: ctx.api.download(  # a download costs nothing: safe to repeat
        f.uri, name, ctx.out_dir, max_bytes=ctx.options.max_download_bytes, accept=f.field.accept,
        kind=f.field.kind or "file"))


def value_file(base: str, name: str, value: Any) -> tuple[str, bytes, str, str]:
    """A value output as a file beside the job's files: ``(name, bytes, content type, kind)``.
    Text is saved as UTF-8 ``<base>-<field>.txt``; any other JSON value (a number, a list,
    an object) as ``<base>-<field>.json``."""
    stem = base
    if PurePosixPath(base).suffix.lower() in MEDIA_SUFFIXES:  # a file name the recipe gave a media extension
        stem = base[: -len(PurePosixPath(base).suffix)]
    if isinstance(value, str):
        return f"{stem}-{name}.txt", value.encode("utf-8"), TEXT_TYPE, "text"
    data = (json.dumps(value, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    return f"{stem}-{name}.json", data, JSON_TYPE, "json"


async def save_outputs(ctx: RunContext, w: Work, view: TaskView,
                       billed: int) -> tuple[list[OutputEntry], list[FileWrite]]:
    """Save every output of a completed task, as its app's output schema describes them: each
    file downloaded, each value (text, JSON) written beside them.

    Returns the manifest's ``outputs`` entries and the files to write (each output and its
    provenance sidecar, which lists all of the job's outputs); the caller hands both to the
    manifest writer together with the ``done`` record, so they land on disk in one batch,
    files first.
    """
    stage = ctx.stage_for(w)
    files = stage.outputs.files(view.output)
    values = {k: v for k, v in stage.outputs.values(view.output).items() if v != ""}
    if not files and (stage.outputs.file_fields or not values):
        wanted = ", ".join(f.name for f in stage.outputs.file_fields) or "a file"
        raise DownloadFailed(f"task {view.id} completed without a file in its output (expected {wanted})")
    fields = len({f.field.name for f in files})
    out_dir = str(ctx.out_dir)
    job = ctx.state.jobs.get(w.key)
    intent = job.intent if job is not None else None
    made: list[tuple[dict[str, Any], OutputEntry, FileWrite]] = []
    for number, f in enumerate(files):
        rel = file_name(w.output_name, f, number == 0, fields)
        dest = f"{out_dir}/{rel}"
        started = time.time()
        try:
            got = await _download(ctx, f, rel)
        except ApiError as exc:
            raise DownloadFailed(str(exc)) from None
        side = {"file": rel, "field": f.field.name, "kind": f.field.kind, "index": f.index, "sha256": got.sha256,
                "size": got.size, "content_type": got.content_type, "source_uri": f.uri,
                "download_seconds": round(time.time() - started, 3)}
        if f.field.kind == "image":  # the name earlier versions gave it
            side["image"] = rel
        made.append((side, OutputEntry(rel, got.sha256, got.size, got.content_type, f.uri, rel + ".json"),
                     FileWrite(dest, got.data, None if got.spilled is None else str(got.spilled))))
    for name, value in values.items():
        rel, data, ctype, kind = value_file(w.output_name, name, value)
        sha = hashlib.sha256(data).hexdigest()
        side = {"file": rel, "field": name, "kind": kind, "index": 0, "sha256": sha, "size": len(data),
                "content_type": ctype, "source_uri": None}
        entry = OutputEntry(rel, sha, len(data), ctype, "", rel + ".json")
        made.append((side, entry, FileWrite(f"{out_dir}/{rel}", data)))
    listed = [{"file": side["file"], "field": side["field"], "kind": side["kind"]} for side, _, _ in made]
    shared = {
        "job": {"id": w.job_id, "key": w.key, "combination": dict(w.labels)},
        "recipe": ctx.provenance.get("recipe"),
        "git": ctx.provenance.get("git"),
        "app": stage.app_ref,
        **_chain(ctx, w),
        "input": None if intent is None else dict(intent.input),
        "input_files": {} if intent is None else dict(intent.files),
        "task_id": view.id,
        "billed_usd": usd_decimal(billed),
        "run_id": ctx.run_id,
        "tool": ctx.provenance.get("tool"),
        "outputs": listed,
    }
    writes: list[FileWrite] = []
    for side, _, write in made:
        timings = {"submitted_at": None if intent is None else intent.at, "downloaded_at": time.time(),
                   "download_seconds": side.pop("download_seconds", 0.0)}
        writes.append(write)
        # Compact JSON: json's indenting encoder is pure Python and costs more than the download.
        document = {**side, **shared, "timings": timings}
        writes.append(FileWrite(write.path + ".json", (json.dumps(document, ensure_ascii=False) + "\n").encode()))
    return [entry for _, entry, _ in made], writes


def _chain(ctx: RunContext, w: Work) -> dict[str, Any]:
    """A pipeline job's stage and the chain of jobs (and files) it comes from, upstream first."""
    if not w.stage:
        return {}
    made = ctx.chain.made.get(w.key) if ctx.chain is not None else None
    return {"stage": w.stage, "chain": list(made.upstream.chain) if made is not None else []}


def _input(ctx: RunContext, w: Work) -> dict[str, Any]:
    assert w.job is not None
    made = ctx.chain.made.get(w.key) if ctx.chain is not None else None
    return dict(made.request) if made is not None else dict(ctx.plan.render(w.job).request)


def serve_cached(ctx: RunContext, w: Work, entry: Entry) -> tuple[list[OutputEntry], list[FileWrite]]:
    """Put a cached result's files in place (linked or copied from the shared cache), each with a
    sidecar that says where it came from; nothing is sent, nothing billed."""
    saved: list[OutputEntry] = []
    writes: list[FileWrite] = []
    out_dir = str(ctx.out_dir)
    for index, f in enumerate(entry.files):
        suffix = os.path.splitext(f.name)[1]
        stem = w.output_name if index == 0 else f"{w.output_name}-{index}"
        rel = stem if os.path.splitext(stem)[1].lower() == suffix.lower() else stem + suffix
        dest = f"{out_dir}/{rel}"
        ctx.cache_serve(entry, f, dest)
        side = {"file": rel, "index": index, "sha256": f.sha256, "size": f.size, "content_type": f.content_type,
                "job": {"id": w.job_id, "key": w.key, "combination": dict(w.labels)},
                "recipe": ctx.provenance.get("recipe"), "git": ctx.provenance.get("git"),
                "app": ctx.stage_for(w).app_ref, **_chain(ctx, w),
                "input": None if w.job is None else _input(ctx, w),
                "task_id": entry.task_id, "billed_usd": "0.00", "cached": True,
                "paid_usd_when_made": usd_decimal(entry.billed_microcents), "run_id": ctx.run_id,
                "tool": ctx.provenance.get("tool")}
        writes.append(FileWrite(dest + ".json", (json.dumps(side, ensure_ascii=False) + "\n").encode()))
        saved.append(OutputEntry(rel, f.sha256, f.size, f.content_type, "", rel + ".json"))
    return saved, writes
