"""The manifest's records: one frozen dataclass per kind, one way to write them, one parser.

Each line of ``manifest.jsonl`` is one record, a JSON object whose ``t`` says its kind
(see docs/running.md, "The output directory"). Code builds records with these classes
and never as dict literals; ``parse`` reads a line's object back into its class,
tolerating what older versions wrote (missing optional fields, kinds it does not know
are skipped), so a manifest written by any earlier version still replays.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "AcceptedRecord",
    "AdoptedRecord",
    "DoneRecord",
    "IntentRecord",
    "NotCreatedRecord",
    "OutputEntry",
    "Record",
    "RunEndRecord",
    "RunRecord",
    "UnknownRecord",
    "UploadRecord",
    "encode",
    "parse",
]


def _now() -> float:
    return time.time()


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _float(value: Any, default: float = 0.0) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run (or collect, or detach) started on this output directory."""

    T: ClassVar[str] = "run"
    run: str
    recipe: str | None = None
    recipe_path: str | None = None
    sources: tuple[str, ...] = ()
    git: Mapping[str, Any] | None = None
    app: str | None = None
    cap_microcents: int | None = None
    tool: str | None = None
    pid: int | None = None
    mode: str = "run"
    webhook_token: str | None = None
    at: float = field(default_factory=_now)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunRecord:
        cap = d.get("cap_microcents")
        return cls(str(d.get("run", "")), _str(d.get("recipe")), _str(d.get("recipe_path")),
                   tuple(str(s) for s in d.get("sources") or ()), d.get("git") if isinstance(d.get("git"), Mapping)
                   else None, _str(d.get("app")), None if cap is None else _int(cap), _str(d.get("tool")),
                   None if d.get("pid") is None else _int(d.get("pid")), str(d.get("mode") or "run"),
                   _str(d.get("webhook_token")) or None, _float(d.get("at")))

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.T, "run": self.run, "recipe": self.recipe, "recipe_path": self.recipe_path,
                "sources": list(self.sources), "git": None if self.git is None else dict(self.git), "app": self.app,
                "cap_microcents": self.cap_microcents, "tool": self.tool, "pid": self.pid, "at": self.at,
                "mode": self.mode, "webhook_token": self.webhook_token}


@dataclass(frozen=True, slots=True)
class RunEndRecord:
    """How a run (``run`` names its ``RunRecord``) ended: written last, under the lock.

    ``exit_code`` is what the command returned (``None`` for a run started from Python);
    ``counts`` the jobs of this run by outcome (completed, failed, not_run, ...);
    ``billed_microcents`` what this run settled, ``settled_microcents`` the directory's
    total after it; ``flags`` the command line as given (URL credentials left out). The
    files it saved are the ``done`` records between its ``run`` record and this one.
    A run killed before its end has none: the history says so.
    """

    T: ClassVar[str] = "run_end"
    run: str
    exit_code: int | None = None
    seconds: float = 0.0
    counts: Mapping[str, int] = field(default_factory=dict)
    billed_microcents: int = 0
    settled_microcents: int = 0
    not_run_microcents: int = 0
    stop: str = ""  # why it stopped submitting early: budget, interrupted, fatal ("": it did not)
    error: str | None = None  # the fatal error's message
    flags: tuple[str, ...] = ()
    at: float = field(default_factory=_now)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunEndRecord:
        code = d.get("exit_code")
        return cls(str(d["run"]), None if code is None else _int(code), _float(d.get("seconds")),
                   {str(k): _int(v) for k, v in _dict(d.get("counts")).items()}, _int(d.get("billed_microcents")),
                   _int(d.get("settled_microcents")), _int(d.get("not_run_microcents")), str(d.get("stop") or ""),
                   _str(d.get("error")),
                   tuple(str(f) for f in d.get("flags") or ()), _float(d.get("at")))

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.T, "run": self.run, "exit_code": self.exit_code, "seconds": self.seconds,
                "counts": dict(self.counts), "billed_microcents": self.billed_microcents,
                "settled_microcents": self.settled_microcents, "not_run_microcents": self.not_run_microcents,
                "stop": self.stop, "error": self.error, "flags": list(self.flags), "at": self.at}


@dataclass(frozen=True, slots=True)
class IntentRecord:
    """Written, and fsync'd, before a submit may leave: the request as it will be sent."""

    T: ClassVar[str] = "intent"
    key: str
    job: str
    attempt: int
    input: Mapping[str, Any]
    reserved_microcents: int
    units: int = 1
    output: str = ""
    combination: Mapping[str, str] = field(default_factory=dict)
    repeat_index: int = 0
    files: Mapping[str, Any] = field(default_factory=dict)
    run: str | None = None
    app: str | None = None
    webhook: str | None = None
    at: float = field(default_factory=_now)
    stage: str | None = None  # a pipeline's stage (None: a one-stage recipe)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IntentRecord:
        key = str(d["key"])
        return cls(key, str(d["job"]) if "job" in d else key[:10], _int(d.get("attempt"), 1), _dict(d.get("input")),
                   _int(d.get("reserved_microcents")), _int(d.get("units"), 1),
                   str(d["output"]) if "output" in d else key[:10],
                   {str(k): str(v) for k, v in _dict(d.get("combination")).items()}, _int(d.get("repeat_index")),
                   _dict(d.get("files")), _str(d.get("run")), _str(d.get("app")), _str(d.get("webhook")),
                   _float(d.get("at")), _str(d.get("stage")))

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.T, "key": self.key, "job": self.job, "attempt": self.attempt, "run": self.run,
                "app": self.app, "input": dict(self.input), "files": dict(self.files),
                "reserved_microcents": self.reserved_microcents, "units": self.units, "output": self.output,
                "combination": dict(self.combination), "repeat_index": self.repeat_index, "webhook": self.webhook,
                "at": self.at, **({"stage": self.stage} if self.stage is not None else {})}


@dataclass(frozen=True, slots=True)
class AcceptedRecord:
    """The service answered the submit: the job's task id."""

    T: ClassVar[str] = "accepted"
    key: str
    task: str
    at: float = field(default_factory=_now)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AcceptedRecord:
        return cls(str(d["key"]), str(d["task"]), _float(d.get("at")))

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.T, "key": self.key, "task": self.task, "at": self.at}


@dataclass(frozen=True, slots=True)
class AdoptedRecord:
    """A lost submit's task was found (``how``: ``listing`` or ``webhook``)."""

    T: ClassVar[str] = "adopted"
    key: str
    task: str
    how: str = "listing"
    at: float = field(default_factory=_now)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AdoptedRecord:
        return cls(str(d["key"]), str(d["task"]), str(d.get("how") or "listing"), _float(d.get("at")))

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.T, "key": self.key, "task": self.task, "at": self.at, "how": self.how}


@dataclass(frozen=True, slots=True)
class UnknownRecord:
    """A submit's answer was lost: a task may or may not exist."""

    T: ClassVar[str] = "unknown"
    key: str
    reason: str
    at: float = field(default_factory=_now)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> UnknownRecord:
        return cls(str(d["key"]), str(d.get("reason") or ""), _float(d.get("at")))

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.T, "key": self.key, "reason": self.reason, "at": self.at}


@dataclass(frozen=True, slots=True)
class NotCreatedRecord:
    """The job's last intent provably created nothing: its reservation is released."""

    T: ClassVar[str] = "not_created"
    key: str
    reason: str
    at: float = field(default_factory=_now)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NotCreatedRecord:
        return cls(str(d["key"]), str(d.get("reason") or ""), _float(d.get("at")))

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.T, "key": self.key, "reason": self.reason, "at": self.at}


@dataclass(frozen=True, slots=True)
class UploadRecord:
    """A local file was uploaded once for this output directory: its content hash -> URI."""

    T: ClassVar[str] = "upload"
    sha256: str
    uri: str
    file: str = ""
    at: float = field(default_factory=_now)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> UploadRecord:
        return cls(str(d["sha256"]), str(d["uri"]), str(d.get("file") or ""), _float(d.get("at")))

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.T, "sha256": self.sha256, "uri": self.uri, "file": self.file, "at": self.at}


@dataclass(frozen=True, slots=True)
class OutputEntry:
    """One file a completed job saved (paths relative to the output directory)."""

    path: str
    sha256: str
    size: int
    content_type: str = ""
    uri: str = ""
    sidecar: str = ""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OutputEntry:
        return cls(str(d.get("path", "")), str(d.get("sha256", "")), _int(d.get("size"), -1),
                   str(d.get("content_type") or ""), str(d.get("uri") or ""), str(d.get("sidecar") or ""))

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size, "content_type": self.content_type,
                "uri": self.uri, "sidecar": self.sidecar}


@dataclass(frozen=True, slots=True)
class DoneRecord:
    """The job's task ended (``status``: completed, failed, cancelled, rejected), with what it cost."""

    T: ClassVar[str] = "done"
    key: str
    job: str
    task: str | None
    status: str
    billed_microcents: int
    error: str | None = None
    outputs: tuple[OutputEntry, ...] = ()
    units: int | None = None
    raw_output: Any = None
    download_pending: bool = False
    redownload: bool = False
    cached: bool = False  # served from the shared result cache: nothing was sent, nothing billed
    at: float = field(default_factory=_now)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DoneRecord:
        key = str(d["key"])
        outputs = tuple(OutputEntry.from_dict(o) for o in d.get("outputs") or () if isinstance(o, Mapping))
        return cls(key, str(d.get("job") or ""), _str(d.get("task")), str(d.get("status") or "failed"),
                   _int(d.get("billed_microcents")), _str(d.get("error")), outputs,
                   None if d.get("units") is None else _int(d.get("units")), d.get("raw_output"),
                   bool(d.get("download_pending")), bool(d.get("redownload")), bool(d.get("cached")),
                   _float(d.get("at")))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"t": self.T, "key": self.key, "job": self.job, "task": self.task,
                             "status": self.status, "billed_microcents": self.billed_microcents, "error": self.error,
                             "at": self.at}
        if self.outputs or self.status == "completed":
            d["outputs"] = [o.to_dict() for o in self.outputs]
        if self.units is not None:
            d["units"] = self.units
        if self.raw_output is not None:
            d["raw_output"] = self.raw_output
        if self.download_pending:
            d["download_pending"] = True
        if self.redownload:
            d["redownload"] = True
        if self.cached:
            d["cached"] = True
        return d

    def slim(self) -> DoneRecord:
        """Without the raw output (a run over many jobs keeps only what a resume needs)."""
        if self.raw_output is None:
            return self
        return DoneRecord(self.key, self.job, self.task, self.status, self.billed_microcents, self.error,
                          self.outputs, self.units, None, self.download_pending, self.redownload, self.cached, self.at)


Record = (RunRecord | IntentRecord | AcceptedRecord | AdoptedRecord | UnknownRecord | NotCreatedRecord | UploadRecord
          | DoneRecord | RunEndRecord)

KINDS: dict[str, Any] = {cls.T: cls for cls in (RunRecord, IntentRecord, AcceptedRecord, AdoptedRecord, UnknownRecord,
                                                NotCreatedRecord, UploadRecord, DoneRecord, RunEndRecord)}


def parse(d: Mapping[str, Any]) -> Record | None:
    """The record a manifest line's object holds; None for a kind this version does not know,
    or a line missing what its kind cannot do without (it is skipped, as older versions did)."""
    cls = KINDS.get(str(d.get("t")))
    if cls is None:
        return None
    try:
        record: Record = cls.from_dict(d)
    except (KeyError, TypeError, ValueError):
        return None
    return record


def encode(record: Record | Mapping[str, Any]) -> bytes:
    """One manifest line."""
    d = record if isinstance(record, Mapping) else record.to_dict()
    return json.dumps(d, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode() + b"\n"
