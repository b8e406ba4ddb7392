"""Everything one emulator instance holds (no module-level state)."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from ..core.schemas import AppSpec, known_apps, load_app
from .apps import AppRegistry, app_id_for
from .config import EmulatorConfig, Faults
from .engine import Engine
from .files import FileStore
from .ident import Clock, Dice, key_id
from .images import ImageMaker
from .ledger import Ledger
from .problems import Problem
from .produce import OutputMaker
from .ratelimit import Limiters
from .webhooks import WebhookSender

__all__ = ["EmulatorState", "app_id_for"]


def served_specs(cfg: EmulatorConfig) -> list[AppSpec]:
    """``cfg.app`` first, then the other apps ``cfg.apps`` names (by default every bundled one)."""
    names = [cfg.app, *(cfg.apps if cfg.apps is not None else known_apps())]
    return [load_app(name) for name in dict.fromkeys(names)]


class EmulatorState:
    def __init__(self, cfg: EmulatorConfig, specs: Iterable[AppSpec] | None = None) -> None:
        self.cfg = cfg
        self.apps = AppRegistry(served_specs(cfg) if specs is None else specs)
        self.clock = Clock()
        self.dice = Dice(cfg.seed)
        self.ledger = Ledger()
        self.files = FileStore()
        self.webhooks = WebhookSender(
            attempts=cfg.webhook_attempts, timeout=cfg.webhook_timeout, backoff=cfg.webhook_backoff
        )
        self.engine = Engine(
            cfg,
            clock=self.clock,
            ledger=self.ledger,
            outputs=OutputMaker(self.files, ImageMaker(cfg.image_scale)),
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
