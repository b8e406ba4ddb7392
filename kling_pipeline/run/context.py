"""Everything one run shares: the plan, the clients (and their pacing), the journal, the ledger, the stop flag."""

from __future__ import annotations

import hashlib
import mimetypes
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anyio

from ..api.apierrors import ApiError, ConnectFailed, ResponseLost
from ..api.client import ApiClient, ClientPool
from ..api.pacing import PaceReport, Pacing
from ..api.wire import TaskView
from ..core.errors import KlingError
from ..core.jobs import Job
from ..core.localfiles import LocalFile, decode_data_uri
from ..core.planning import Plan
from ..core.schemas import Pricing
from ..store.manifest import FileWrite, Journal, ManifestState
from .budget import BudgetLedger, LedgerSnapshot

__all__ = ["Events", "RunContext", "RunOptions"]


@dataclass(frozen=True, slots=True)
class RunOptions:
    concurrency: int = 8
    provider_retries: int = 5  # re-submits after a provider concurrency-limit failure (Kling 1303)
    stream_attempts: int = 5  # stream (re)connections before polling only
    task_timeout: float = 1800.0
    reconcile: bool = True
    reconcile_window: float = 120.0  # how long the task listing may lag behind a submit
    reconcile_poll: float = 1.0
    reconcile_margin: float = 300.0  # clock skew allowed between us and the service
    reconcile_pages: int = 20
    drain_timeout: float = 120.0  # after Ctrl-C, how long to wait for in-flight tasks
    cancel_inflight: bool = False
    retry_failed: bool = False
    retry_unknown: bool = False
    rate: float | None = None  # submits per second
    webhook: str | None = None
    max_download_bytes: int = 64 * 1024 * 1024
    connect_grace: float = 30.0  # how long the API may stay unreachable before the run stops
    mode: str = "run"  # run | detach (submit, do not wait) | collect (follow what was submitted, submit nothing)


class Events(Protocol):
    """What the run tells its display (TTY, plain log lines or JSON events)."""

    def attach(self, ledger: Callable[[], LedgerSnapshot], pacing: Pacing | None = None) -> None: ...
    def pacing(self, report: PaceReport) -> None: ...
    def started(self, w: Any) -> None: ...
    def submitting(self, w: Any, retry: int) -> None: ...
    def accepted(self, w: Any, task_id: str) -> None: ...
    def progress(self, w: Any, view: TaskView) -> None: ...
    def throttled(self, w: Any, exc: ApiError, delay: float) -> None: ...
    def unknown(self, w: Any, reason: str) -> None: ...
    def resubmit(self, w: Any) -> None: ...
    def finished(self, w: Any, result: Any) -> None: ...
    def stopping(self, reason: str, detail: str) -> None: ...


@dataclass(slots=True)
class RunContext:
    plan: Plan
    pool: ClientPool
    journal: Journal
    manifest: ManifestState
    ledger: BudgetLedger
    options: RunOptions
    events: Events
    provenance: Mapping[str, Any]
    run_id: str
    claimed: set[str] = field(default_factory=set)
    stopping: anyio.Event = field(default_factory=anyio.Event)
    stop_reason: str = ""
    interrupted: bool = False
    fatal: BaseException | None = None
    uploading: dict[str, anyio.Event] = field(default_factory=dict)
    inflight: dict[str, ApiClient] = field(default_factory=dict)  # task id -> the client following it
    unreachable_since: float | None = None
    webhook_token: str = ""
    working: set[str] = field(default_factory=set)  # keys of the jobs being worked on (staged or running)
    staged: dict[str, Any] = field(default_factory=dict)  # key -> runner.Staged, ready to send
    waiting_for_money: int = 0  # of those, jobs waiting in reserve()
    task_ended_hooks: dict[str, Callable[[], None]] = field(default_factory=dict)
    downloading: set[str] = field(default_factory=set)  # jobs whose slot went to the next job while they download
    _ledger_changed: anyio.Event = field(default_factory=anyio.Event)
    inflight_changed: anyio.Event = field(default_factory=anyio.Event)

    def task_ended(self, key: str) -> None:
        """The job's task has completed at the service: its concurrency slot can go to the
        next job while this one downloads — unless ``concurrency`` jobs already are
        downloading (that bounds the images held in memory)."""
        hook = self.task_ended_hooks.get(key)
        if hook is not None and len(self.downloading) < self.options.concurrency:
            del self.task_ended_hooks[key]
            self.downloading.add(key)
            hook()

    def download_done(self, key: str) -> None:
        self.downloading.discard(key)

    def track(self, task_id: str, api: ApiClient | None) -> None:
        """Note a task being followed (``api``) or no longer followed (None)."""
        if api is None:
            self.inflight.pop(task_id, None)
        else:
            self.inflight[task_id] = api
        self.inflight_changed.set()
        self.inflight_changed = anyio.Event()

    def unreachable_for(self) -> float:
        """Seconds since submits started failing to connect (0 on the first failure)."""
        now = time.monotonic()
        if self.unreachable_since is None:
            self.unreachable_since = now
        return now - self.unreachable_since

    def reachable(self) -> None:
        self.unreachable_since = None

    @property
    def app_ref(self) -> str:
        return str(self.plan.recipe.app)

    @property
    def pricing(self) -> Pricing:
        return self.plan.app.pricing

    @property
    def out_dir(self) -> Path:
        return self.plan.output_dir

    async def record(self, record: dict[str, Any], files: Sequence[FileWrite] = ()) -> None:
        """Write a manifest record (after ``files``) and fold it into the live state.

        Only an ``intent`` is waited for: it must be on disk before its request
        leaves. Every other record is queued; a crash that loses one leaves a job a
        resume re-attaches or reconciles, never one it pays for again.
        """
        record.setdefault("at", time.time())
        if isinstance(record.get("task"), str):
            self.claimed.add(record["task"])  # a known task is never adopted by another job's reconciliation
        if record.get("t") == "intent":
            await self.journal.append(record)
        else:
            self.journal.post(record, files)
        self.manifest.apply(record)

    async def reserve(self, amount: int) -> bool:
        """Reserve ``amount`` under the cap. When it does not fit only because of reservations
        and other jobs are still working (one may settle for less, a failed task may free its
        money), wait for them instead of stopping early; False when it cannot fit."""
        while not self.ledger.reserve(amount):
            cap = self.ledger.cap
            others_working = len(self.working) - self.waiting_for_money - 1
            if cap is None or self.ledger.settled + amount > cap or self.stopping.is_set() or others_working <= 0:
                return False
            self.waiting_for_money += 1
            try:
                await self._ledger_changed.wait()
            finally:
                self.waiting_for_money -= 1
        return True

    def job_started(self, key: str) -> None:
        self.working.add(key)

    def job_ended(self, key: str) -> None:
        """A job is over: jobs waiting for money re-check (it may have been the last that could free some)."""
        if key in self.working:
            self.working.discard(key)
            self._notify()

    def settle(self, reserved: int, billed: int) -> None:
        self.ledger.settle(reserved, billed)
        self._notify()

    def release(self, reserved: int) -> None:
        self.ledger.release(reserved)
        self._notify()

    def _notify(self) -> None:
        self._ledger_changed.set()
        self._ledger_changed = anyio.Event()

    def stop(self, reason: str, exc: BaseException | None = None) -> None:
        """Stop submitting (budget, fatal error, interrupt). The first reason wins."""
        if not self.stopping.is_set():
            self.stop_reason = reason
            self.fatal = exc
            self.stopping.set()
            self._notify()  # wake jobs waiting for money
            self.events.stopping(reason, str(exc) if exc else "")

    def webhook_for(self, w: Any) -> str | None:
        """The job's own webhook URL: the user's, plus this output directory's secret token
        and the job's key, so a receiver can tell genuine deliveries and whose they are."""
        if not self.options.webhook:
            return None
        sep = "&" if "?" in self.options.webhook else "?"
        return f"{self.options.webhook}{sep}kp={self.webhook_token}&job={w.key[:32]}"

    def intent_record(self, w: Any, request: Mapping[str, Any], files: Mapping[str, Any],
                      attempt: int) -> dict[str, Any]:
        job: Job = w.job
        return {
            "t": "intent", "key": w.key, "job": w.job_id, "attempt": attempt, "run": self.run_id,
            "app": self.app_ref, "input": dict(request), "files": dict(files),
            "reserved_microcents": w.cost, "units": w.units, "output": w.output_name,
            "combination": dict(job.combination.labels), "repeat_index": job.repeat_index,
            "webhook": self.webhook_for(w), "at": time.time(),
        }

    async def prepare_request(self, api: ApiClient, job: Job) -> tuple[dict[str, Any], dict[str, Any]]:
        """The request as it is sent: local files and data: URIs replaced by uploaded URIs."""
        rendered = self.plan.render(job)
        request = dict(rendered.request)
        files: dict[str, Any] = {}
        for name, local in rendered.files.items():
            request[name] = await self.upload(api, local, request[name])
            files[name] = {"source": (local.path and str(local.path)) or "data:", "sha256": local.sha256,
                           "size": local.size, "uri": request[name]}
        return request, files

    async def upload(self, api: ApiClient, local: LocalFile, value: str) -> str:
        """Upload once per content hash per output directory (the manifest remembers)."""
        while True:
            uri = self.manifest.uploads.get(local.sha256)
            if uri:
                return uri
            busy = self.uploading.get(local.sha256)
            if busy is None:
                break
            await busy.wait()
        done = self.uploading[local.sha256] = anyio.Event()
        try:
            if local.path is not None:
                data = await anyio.Path(local.path).read_bytes()
                filename = local.path.name
                if hashlib.sha256(data).hexdigest() != local.sha256:
                    raise KlingError(f"{local.path} changed since the plan was made; run again to plan with it")
            else:
                _, data = decode_data_uri(value)
                filename = f"{local.sha256[:12]}{mimetypes.guess_extension(local.media_type) or ''}"
            attempt = 0
            while True:
                try:
                    uploaded = await api.upload(data, filename, local.media_type)
                    break
                except (ConnectFailed, ResponseLost):  # an upload costs nothing: safe to repeat
                    attempt += 1
                    if attempt == 4:
                        raise
                    await anyio.sleep(0.5 * 2 ** attempt)
            await self.record({"t": "upload", "sha256": local.sha256, "uri": uploaded, "file": filename})
            return uploaded
        finally:
            del self.uploading[local.sha256]
            done.set()
