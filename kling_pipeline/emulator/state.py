"""Everything one emulator instance holds, created per app (no module-level state)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import asdict
from typing import Any

from ..core.schemas import AppSpec, load_app
from .config import EmulatorConfig, Faults
from .engine import Engine
from .files import FileStore
from .ident import Clock, Dice, key_id
from .images import ImageMaker
from .ledger import Ledger
from .problems import Problem
from .ratelimit import Limiters
from .validation import InputChecker
from .webhooks import WebhookSender

__all__ = ["EmulatorState", "app_id_for"]


def app_id_for(name: str) -> str:
    """The app's opaque, stable id (what ``app_id`` filters and the estimate path take)."""
    return "app_" + hashlib.sha256(f"kling-emulator-app\x00{name}".encode()).hexdigest()[:20]


class EmulatorState:
    def __init__(self, cfg: EmulatorConfig, spec: AppSpec | None = None) -> None:
        self.cfg = cfg
        self.spec = spec or load_app(cfg.app)
        self.app_id = app_id_for(self.spec.name)
        self.clock = Clock()
        self.dice = Dice(cfg.seed)
        self.ledger = Ledger()
        self.files = FileStore()
        self.checker = InputChecker(self.spec)
        self.webhooks = WebhookSender(
            attempts=cfg.webhook_attempts, timeout=cfg.webhook_timeout, backoff=cfg.webhook_backoff
        )
        self.engine = Engine(
            cfg,
            self.spec,
            self.app_id,
            clock=self.clock,
            ledger=self.ledger,
            files=self.files,
            images=ImageMaker(self.spec.output_pixels, cfg.image_scale),
            webhooks=self.webhooks,
        )
        self.limiters = Limiters(cfg.limits, clock=self.clock.unix)

    @property
    def faults(self) -> Faults:
        return self.engine.faults

    def set_faults(self, faults: Faults) -> None:
        self.engine.set_faults(faults)

    def limits_dict(self) -> dict[str, Any]:
        """What ``/_emulator/limits`` answers: the limits in force and the counters."""
        return {"limits": self.limiters.limits.to_dict(), "stats": self.limiters.stats()}

    def faults_dict(self) -> dict[str, Any]:
        return asdict(self.faults)

    def authenticate(self, header: str | None) -> str:
        """The caller's key id from ``Authorization: Bearer <key>``; 401 otherwise."""
        if not header:
            raise self._unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise self._unauthorized("malformed Authorization header: expected 'Bearer <key>'")
        expected = self.cfg.api_key
        if expected is not None and not hmac.compare_digest(token.encode(), expected.encode()):
            raise self._unauthorized("invalid API key")
        return key_id(token)

    @staticmethod
    def _unauthorized(detail: str) -> Problem:
        return Problem(401, "unauthorized", "Unauthorized", detail, headers=[("www-authenticate", "Bearer")])

    def file_ready(self, file_id: str) -> bool:
        stored = self.files.get(file_id)
        return stored is not None and stored.ready
