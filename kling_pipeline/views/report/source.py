"""The report's one reader of the manifest: records in, ``ManifestJob``s out, never the whole file.

``ManifestSource`` streams ``manifest.jsonl`` line by line and spreads each job's records, slimmed
to what the report shows, over a few bucket files (by a hash of the job's content key), then replays
one bucket at a time with the store's own ``ManifestState``. So the records of every job are folded
exactly as a run folds them, while memory holds one bucket (a few thousand jobs), not the sweep.
Nothing else in the report knows the record format.
"""

from __future__ import annotations

import contextlib
import json
import os
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ...store.journal import ManifestError
from ...store.records import parse
from ...store.state import JobState, ManifestState

__all__ = ["ManifestJob", "ManifestOutput", "ManifestSource", "RunInfo", "prompt_of"]

BUCKET_BYTES = 1 << 20  # about this much manifest per bucket: ~1,000 jobs, a few MB replayed
MAX_BUCKETS = 128
MAX_OUTPUTS = 64  # outputs kept per job (the app returns up to 9): a manifest is only data
_RUN_FIELDS = ("recipe", "app", "cap_microcents", "at")
_JOB_FIELDS = {
    "intent": ("job", "attempt", "reserved_microcents", "combination", "repeat_index", "stage", "app"),
    "accepted": ("task",),
    "adopted": ("task",),
    "unknown": ("reason",),
    "not_created": ("reason",),
    "done": ("job", "status", "task", "billed_microcents", "error"),
}
_OUTPUT_FIELDS = ("path", "sha256", "size", "content_type")


@dataclass(frozen=True, slots=True)
class ManifestOutput:
    path: str
    sha256: str | None
    size: int | None
    content_type: str | None


@dataclass(frozen=True, slots=True)
class ManifestJob:
    """What the manifest says about one job, as the report needs it."""

    key: str
    job_id: str
    state: str  # the store's state: new | intent | submitted | unknown | not_created | completed | ...
    submitted: bool  # an intent was recorded: the job was (about to be) sent
    labels: tuple[tuple[str, str], ...]  # the combination of its last intent
    repeat_index: int
    prompt: str | None
    reserved: int | None  # microcents reserved by its last attempt
    outstanding: int  # microcents still reserved (an unsettled submit)
    billed: int
    error: str | None
    task_id: str | None
    attempts: int
    outputs: tuple[ManifestOutput, ...]  # completed jobs only
    line: int  # the manifest line that first names it
    stage: str | None = None  # a pipeline's stage (its last intent's)
    parent: str | None = None  # a downstream job: the key of the upstream job whose output it read
    parent_stage: str | None = None  # ... that job's stage, its id, and the file read (as recorded)
    parent_job: str | None = None
    parent_file: str | None = None
    app: str | None = None  # the app its last intent was sent to
    request: Mapping[str, Any] | None = None  # its last intent's input and files, when the source keeps them
    files: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class RunInfo:
    recipe: str | None
    app: str | None
    cap: int | None
    at: float | None


class ManifestSource:
    """``scan()`` once, then ``bucket_of(key)`` and ``buckets()``; ``runs`` is filled by the scan.
    ``requests``: keep the whole input and files of a pipeline stage's intents (to tell which
    planned job a downstream job stands for), not only its prompt and upstream job."""

    def __init__(self, path: Path, workdir: Path, *, requests: bool = False) -> None:
        self.path = path
        self.workdir = workdir
        self.requests = requests
        self.runs: list[RunInfo] = []
        self.staged = False  # some intent names a pipeline's stage
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        except OSError as exc:
            raise ManifestError(f"{path}: cannot read the manifest: {exc.strerror or exc}") from None
        self.count = max(1, min(MAX_BUCKETS, size // BUCKET_BYTES + 1))

    def bucket_of(self, key: str) -> int:
        return zlib.crc32(key.encode("utf-8", "surrogatepass")) % self.count

    def _bucket_path(self, index: int) -> Path:
        return self.workdir / f"bucket-{index:03d}.jsonl"

    def scan(self) -> None:
        """Read the manifest once, slimming each job record into its bucket. A last line without its
        newline (a write cut by kill -9) is ignored, as a run ignores it."""
        files: list[IO[bytes]] = []
        try:
            files = [self._bucket_path(i).open("wb") for i in range(self.count)]
            try:
                fh = self.path.open("rb")
            except FileNotFoundError:
                return
            except OSError as exc:
                raise ManifestError(f"{self.path}: cannot read the manifest: {exc.strerror or exc}") from None
            with fh:
                for number, line in enumerate(fh, 1):
                    if not line.endswith(b"\n") or not line.strip():
                        continue
                    self._route(number, line, files)
        finally:
            for f in files:
                f.close()

    def _route(self, number: int, line: bytes, files: list[IO[bytes]]) -> None:
        try:
            record = json.loads(line.decode("utf-8"))  # (str: json.loads of bytes guesses the encoding first)
        except ValueError:
            raise ManifestError(
                f"{self.path}:{number}: corrupt manifest line (not JSON); the file was changed by hand? "
                "Move it away to start over (spend recorded in it is then forgotten)") from None
        if not isinstance(record, dict):
            return
        kind, key = record.get("t"), record.get("key")
        if kind == "run":
            self.runs.append(_run_info(record))
        elif isinstance(key, str) and kind in _JOB_FIELDS:
            slim = _slim(record, kind, key, self.requests)
            self.staged = self.staged or isinstance(slim.get("stage"), str)
            slim["_n"] = number
            files[self.bucket_of(key)].write(json.dumps(slim).encode("ascii") + b"\n")

    def buckets(self) -> Iterator[tuple[int, list[ManifestJob]]]:
        """Each bucket's index and jobs, folded by the store's ``ManifestState``; one bucket in memory at a time.
        A record the store cannot fold (a value of the wrong type) is skipped, not fatal."""
        for index in range(self.count):
            path = self._bucket_path(index)
            state, first = ManifestState(), dict[str, int]()
            with contextlib.suppress(FileNotFoundError), path.open(encoding="ascii") as fh:
                for line in fh:
                    record = json.loads(line)
                    first.setdefault(record["key"], record.pop("_n"))
                    typed = parse(record)  # None for a record missing what its kind needs: skipped
                    if typed is not None:
                        state.apply(typed)
            with contextlib.suppress(OSError):
                os.unlink(path)
            yield index, [_job(js, first[js.key], self.requests) for js in state.jobs.values()]


def _slim(record: Mapping[str, Any], kind: str, key: str, requests: bool = False) -> dict[str, Any]:
    slim: dict[str, Any] = {"t": kind, "key": key}
    for name in _JOB_FIELDS[kind]:
        if name in record:
            slim[name] = record[name]
    if kind == "intent" and requests and isinstance(record.get("stage"), str):
        for name in ("input", "files"):
            if isinstance(record.get(name), Mapping):
                slim[name] = record[name]
    elif kind == "intent":
        request = record.get("input")
        text = prompt_of(request) if isinstance(request, Mapping) else None
        if text is not None:
            slim["input"] = {"prompt": text}
        upstream = _upstream(record.get("files"))
        if upstream is not None:  # the upstream job and file alone, as the store reads ``files``
            source = upstream.pop("source", None)
            slim["files"] = {"from": {"upstream": upstream, **({"source": source} if source else {})}}
    elif kind == "done" and isinstance(record.get("outputs"), list):
        slim["outputs"] = [{k: item[k] for k in _OUTPUT_FIELDS if k in item}
                           for item in record["outputs"][:MAX_OUTPUTS] if isinstance(item, Mapping)]
    return slim


def _upstream(files: Any) -> dict[str, str] | None:
    """A downstream intent's upstream job (``files.<field>.upstream``: its key, stage and id, and the
    file read, ``source``), the first one named (a job reads the outputs of one upstream job)."""
    if not isinstance(files, Mapping):
        return None
    for item in files.values():
        up = item.get("upstream") if isinstance(item, Mapping) else None
        if isinstance(up, Mapping) and isinstance(up.get("key"), str):
            named = {"stage": up.get("stage"), "job": up.get("job"), "source": item.get("source")}
            return {"key": up["key"], **{k: v for k, v in named.items() if isinstance(v, str)}}
    return None


def _run_info(record: Mapping[str, Any]) -> RunInfo:
    recipe, app, cap, at = (record.get(name) for name in _RUN_FIELDS)
    return RunInfo(recipe=recipe if isinstance(recipe, str) and recipe else None,
                   app=app if isinstance(app, str) and app else None,
                   cap=_int(cap), at=float(at) if isinstance(at, int | float) and not isinstance(at, bool) else None)


PROMPT_FIELDS = ("prompt", "text")  # the request field a job's card shows: its prompt, or the text it speaks


def prompt_of(request: Mapping[str, Any]) -> str | None:
    """The text that says what a job asked for (``prompt``, else ``text``), if its request has one."""
    return next((v for v in map(request.get, PROMPT_FIELDS) if isinstance(v, str)), None)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _job(js: JobState, line: int, requests: bool) -> ManifestJob:
    intent, done = js.intent, js.done
    labels = tuple(intent.combination.items()) if intent is not None else ()
    outputs: tuple[ManifestOutput, ...] = ()
    if js.state == "completed" and done is not None:
        outputs = tuple(ManifestOutput(path=o.path, sha256=o.sha256 or None, size=o.size if o.size >= 0 else None,
                                       content_type=o.content_type or None) for o in done.outputs if o.path)
    unsettled = not js.terminal and js.state != "not_created"
    link = _upstream(intent.files) if intent is not None else None
    whole = requests and intent is not None and intent.stage is not None
    return ManifestJob(
        key=js.key, job_id=js.job_id or js.key[:10], state=js.state, submitted=intent is not None, labels=labels,
        repeat_index=intent.repeat_index if intent is not None else 0,
        prompt=prompt_of(intent.input) if intent is not None else None,
        reserved=intent.reserved_microcents if intent is not None else None,
        outstanding=js.reserved if unsettled else 0,
        billed=js.billed, error=_str(js.error), task_id=_str(js.task_id), attempts=js.attempts,
        outputs=outputs, line=line, stage=intent.stage if intent is not None else None,
        parent=link["key"] if link else None, parent_stage=link.get("stage") if link else None,
        parent_job=link.get("job") if link else None, parent_file=link.get("source") if link else None,
        app=intent.app if intent is not None else None, request=intent.input if whole and intent else None,
        files=intent.files if whole and intent else None)
