"""The bundled app data in ``schemas/``: input/output JSON Schemas and price tables.

Nothing about an app (fields, enums, prices) is written in Python; it is read
from ``schemas/<namespace>/<name>/app.json``. The directory ships inside the
wheel as ``kling_pipeline/_schemas``; from a source checkout the top-level
``schemas/`` is used.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import KlingError, SchemaDataError
from .money import parse_usd

__all__ = [
    "AppRef",
    "AppSpec",
    "LimitClass",
    "Pricing",
    "ServiceLimits",
    "UnknownAppError",
    "known_apps",
    "load_app",
    "parse_app_ref",
    "schemas_root",
    "service_limits",
]


class UnknownAppError(KlingError, LookupError):
    """No bundled schema for the app a recipe or request names."""


@dataclass(frozen=True, slots=True)
class AppRef:
    """``namespace/name`` with an optional ``@version``."""

    name: str
    version: str | None = None

    def __str__(self) -> str:
        return f"{self.name}@{self.version}" if self.version else self.name


def parse_app_ref(text: str) -> AppRef:
    """Split ``klingai/image-o1@0pbaxv40`` (an optional ``:function`` suffix is refused)."""
    name, _, version = text.strip().partition("@")
    parts = name.split("/")
    if len(parts) != 2 or not all(parts) or any(c.isspace() for c in text.strip()):
        raise ValueError(f"app must look like 'namespace/name' or 'namespace/name@version', got {text!r}")
    if "@" in text and not version:
        raise ValueError(f"empty version after '@' in {text!r}")
    if ":" in text:
        raise ValueError(f"app functions (':name') are not supported: {text!r}")
    return AppRef(name=name, version=version or None)


@dataclass(frozen=True, slots=True)
class Pricing:
    """Price of one task: ``microcents_per_unit`` x the value of ``quantity_field``."""

    microcents_per_unit: int
    unit: str
    quantity_field: str
    quantity_default: int
    images_returned_per_task: int
    source: str
    read_on: str

    def quantity(self, request: Mapping[str, Any]) -> int:
        """Billed units for one request (e.g. ``n`` images)."""
        value = request.get(self.quantity_field, self.quantity_default)
        if isinstance(value, float) and value.is_integer():  # JSON Schema counts 2.0 as an integer
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            return self.quantity_default
        return value

    def cost(self, request: Mapping[str, Any]) -> int:
        """Exact price of one request in microcents."""
        return self.microcents_per_unit * self.quantity(request)


@dataclass(frozen=True, slots=True)
class AppSpec:
    """Everything the project knows about one app, as loaded from ``schemas/``."""

    name: str
    title: str
    pinned_version: str | None
    input_schema: Mapping[str, Any]
    output_schema: Mapping[str, Any]
    pricing: Pricing
    output_pixels: Mapping[str, Mapping[str, tuple[int, int]]]
    directory: Path

    def with_price(self, microcents_per_unit: int) -> AppSpec:
        """A copy priced differently (a recipe's ``price`` override)."""
        from dataclasses import replace

        return replace(self, pricing=replace(self.pricing, microcents_per_unit=microcents_per_unit))


def schemas_root() -> Path:
    """The directory holding the bundled app data (wheel first, then source checkout)."""
    package = Path(__file__).resolve().parent.parent  # kling_pipeline/
    for candidate in (package / "_schemas", package.parent / "schemas"):
        if candidate.is_dir():
            return candidate
    raise SchemaDataError(
        f"bundled schemas not found (looked in {package / '_schemas'} and {package.parent / 'schemas'}); "
        "reinstall kling-pipeline"
    )


def known_apps(root: Path | None = None) -> list[str]:
    base = root or schemas_root()
    return sorted(str(p.parent.relative_to(base)) for p in base.glob("*/*/app.json"))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SchemaDataError(f"{path}: cannot read bundled app data: {exc}") from exc


def load_app(app: str | AppRef, root: Path | None = None) -> AppSpec:
    """Load an app's schemas and price table. ``app`` may carry an ``@version``."""
    ref = parse_app_ref(app) if isinstance(app, str) else app
    base = root or schemas_root()
    directory = base / ref.name
    meta_path = directory / "app.json"
    if not meta_path.is_file():
        known = ", ".join(known_apps(base)) or "none"
        raise UnknownAppError(f"no bundled schema for app {ref.name!r} (known apps: {known})")
    meta = _read_json(meta_path)
    try:
        price = meta["pricing"]
        pricing = Pricing(
            microcents_per_unit=parse_usd(price["usd_per_unit"]),
            unit=str(price["unit"]),
            quantity_field=str(price["quantity_field"]),
            quantity_default=int(price.get("quantity_default", 1)),
            images_returned_per_task=int(price.get("images_returned_per_task", 1)),
            source=str(price.get("source", "")),
            read_on=str(price.get("read_on", "")),
        )
        pixels = {
            res: {ratio: (int(wh[0]), int(wh[1])) for ratio, wh in table.items()}
            for res, table in meta.get("output_pixels", {}).items()
        }
        return AppSpec(
            name=str(meta["app"]),
            title=str(meta.get("title", meta["app"])),
            pinned_version=meta.get("pinned_version"),
            input_schema=_read_json(directory / meta["input_schema"]),
            output_schema=_read_json(directory / meta["output_schema"]),
            pricing=pricing,
            output_pixels=pixels,
            directory=directory,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SchemaDataError(f"{meta_path}: malformed app data: {exc!r}") from exc


LimitClass = Literal["runs", "reads", "uploads"]
"""One of ``LIMIT_CLASSES``: the service counts each class of call against its own limit."""
LIMIT_CLASSES: tuple[LimitClass, ...] = ("runs", "reads", "uploads")


@dataclass(frozen=True, slots=True)
class ServiceLimits:
    """The service's published rate limits per API key, in calls per minute (``schemas/service.json``)."""

    runs_per_minute: float
    reads_per_minute: float
    uploads_per_minute: float
    source: str
    read_on: str

    def per_minute(self, kind: LimitClass) -> float:
        return float(getattr(self, f"{kind}_per_minute"))


def service_limits(root: Path | None = None) -> ServiceLimits:
    """The published rate limits, read from the bundled ``service.json``."""
    path = (root or schemas_root()) / "service.json"
    data = _read_json(path)
    try:
        limits = data["rate_limits"]
        values = {kind: float(limits[kind]["per_minute"]) for kind in LIMIT_CLASSES}
        if not all(v > 0 for v in values.values()):
            raise ValueError("every per_minute must be > 0")
        return ServiceLimits(values["runs"], values["reads"], values["uploads"], str(data.get("source", "")),
                             str(data.get("read_on", "")))
    except (KeyError, TypeError, ValueError) as exc:
        raise SchemaDataError(f"{path}: malformed service limits: {exc!r}") from exc
