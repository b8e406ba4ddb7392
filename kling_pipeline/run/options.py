"""How a run behaves: the user's flags and the run layer's bounds, validated once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Mode", "RunOptions"]

Mode = Literal["run", "detach", "collect"]
"""run: submit and follow · detach: submit, do not wait · collect: follow what was submitted, submit nothing."""


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
    rate: float | None = None  # submits per second, a ceiling over what the service allows
    webhook: str | None = None
    max_download_bytes: int = 64 * 1024 * 1024
    connect_grace: float = 30.0  # how long the API may stay unreachable before the run stops
    mode: Mode = "run"
    cache: str | None = None  # the shared result cache's directory (None: no cache)
    upstream_url_ttl: float = 1800.0  # a pipeline passes an upstream output on by its URL for this long
