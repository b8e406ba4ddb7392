"""The bundled app data in ``schemas/``: input/output JSON Schemas and price tables.

Nothing about an app (fields, enums, prices) is written in Python; it is read
from ``schemas/<namespace>/<name>/app.json``. The directory ships inside the
wheel as ``kling_pipeline/_schemas``; from a source checkout the top-level
``schemas/`` is used.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

from .errors import KlingError, SchemaDataError
from .money import parse_usd
from .outputs import OutputSpec

__all__ = [
    "AppRef",
    "AppSpec",
    "Confidence",
    "LimitClass",
    "Pricing",
    "QuantityOf",
    "Rate",
    "ServiceLimits",
    "UnknownAppError",
    "known_apps",
    "load_app",
    "parse_app_ref",
    "parse_pricing",
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


Confidence = Literal["exact", "range", "unknown"]
"""How well a price is known (the words of the estimate endpoint)."""
QuantityOf = Literal["value", "length"]
"""What of the quantity field is counted: its value (``n``, ``duration``) or its length (a text's characters)."""


@dataclass(frozen=True, slots=True)
class Rate:
    """A unit price that applies when every field in ``when`` has one of its values."""

    when: tuple[tuple[str, tuple[Any, ...]], ...]
    """(field, accepted values) pairs; a ``None`` value accepts a missing or null field."""
    microcents_per_unit: int

    def matches(self, request: Mapping[str, Any], defaults: Mapping[str, Any]) -> bool:
        return all(request.get(name, defaults.get(name)) in accepted for name, accepted in self.when)


@dataclass(frozen=True, slots=True)
class Pricing:
    """Price of one task: a unit price x a quantity read from the request.

    Read from ``pricing`` in ``app.json``. Keys (only ``usd_per_unit`` and ``unit`` are
    needed for an exact price; everything else has a default):

    - ``usd_per_unit`` (decimal string): the unit price, and the price when no rate applies.
    - ``unit``: what is billed, singular: ``image``, ``second``, ``character``, ``token``, ``run``.
    - ``quantity_field``: the input field giving the number of units (``n``, ``duration``,
      ``text``); absent or null: one unit per task (per-run pricing).
    - ``quantity_of``: ``value`` (default: the field's integer value) or ``length`` (the
      number of characters of a text field, divided by ``length_per_unit``, rounded up:
      ``length_per_unit: 4`` counts about-4-character tokens).
    - ``quantity_default``: units when the field is absent (default: the schema's default, else 1).
    - ``rates``: ``[{"when": {field: value | [values]}, "usd_per_unit": "..."}]``, first match
      wins; ``null`` matches a missing or null field; fields the request leaves out take
      their schema defaults.
    - ``confidence``: ``exact`` (default), ``range`` (then ``min`` and ``max``, USD per unit,
      bound the real price) or ``unknown`` (``usd_per_unit`` may then be left out: 0).
    - ``images_returned_per_task`` (default 1: what image-o1 returns whatever ``n``), ``note``
      (how the price is made up), ``source`` and ``read_on`` (where and when it was read).

    ``cost`` is the table's price (for a range: the typical price ``usd_per_unit``);
    ``cost_range`` gives the bounds a budget should reserve, or None when unknown.
    """

    microcents_per_unit: int
    unit: str
    quantity_field: str
    """Empty for a price per run (the quantity is then always 1)."""
    quantity_default: int
    images_returned_per_task: int
    source: str
    read_on: str
    quantity_of: QuantityOf = "value"
    length_per_unit: int = 1
    rates: tuple[Rate, ...] = ()
    confidence: Confidence = "exact"
    min_microcents_per_unit: int | None = None
    max_microcents_per_unit: int | None = None
    note: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict, hash=False)
    """The input schema's defaults, for fields a request leaves out."""

    def quantity(self, request: Mapping[str, Any]) -> int:
        """Billed units for one request (e.g. ``n`` images, ``duration`` seconds, characters)."""
        if not self.quantity_field:
            return 1
        value = request.get(self.quantity_field, self.quantity_default)
        if self.quantity_of == "length":
            return math.ceil(len(value) / self.length_per_unit) if isinstance(value, str) else self.quantity_default
        if isinstance(value, float) and value.is_integer():  # JSON Schema counts 2.0 as an integer
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            return self.quantity_default
        return value

    def unit_price(self, request: Mapping[str, Any]) -> int:
        """Microcents per unit for this request: the first rate that matches, else the base price."""
        for rate in self.rates:
            if rate.matches(request, self.defaults):
                return rate.microcents_per_unit
        return self.microcents_per_unit

    def cost(self, request: Mapping[str, Any]) -> int:
        """Price of one request in microcents (exact, or the typical price of a range)."""
        return self.unit_price(request) * self.quantity(request)

    def unit_bounds(self, request: Mapping[str, Any]) -> tuple[int, int] | None:
        """(lowest, highest) microcents per unit for this request; None when the price is unknown."""
        if self.confidence == "unknown":
            return None
        price = self.unit_price(request)
        if self.confidence == "exact":
            return price, price
        low = price if self.min_microcents_per_unit is None else self.min_microcents_per_unit
        high = price if self.max_microcents_per_unit is None else self.max_microcents_per_unit
        return low, high

    def cost_range(self, request: Mapping[str, Any]) -> tuple[int, int] | None:
        """(lowest, highest) price of one request in microcents; None when the price is unknown."""
        bounds = self.unit_bounds(request)
        if bounds is None:
            return None
        units = self.quantity(request)
        return bounds[0] * units, bounds[1] * units

    @property
    def returned_cap(self) -> int:
        """Billed units above which a task pays for images it does not return (``n`` of image-o1):
        ``images_returned_per_task`` for a price per image; no cap for other units."""
        return self.images_returned_per_task if self.unit == "image" else sys.maxsize


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
    emulator: Mapping[str, Any] = field(default_factory=dict)
    """How the bundled emulator fakes this app's outputs (``app.json``'s ``emulator``; read by the emulator only)."""
    source: Mapping[str, Any] = field(default_factory=dict)
    """Where the schemas were read (``app.json``'s ``source``: repository, paths, commits, date)."""

    @property
    def returns_every_image(self) -> bool:
        """The output schema's images are lists only (gemini's ``images``): as many as the task is
        billed for. (image-o1's has a single ``image``, and an ``images`` list no version fills.)"""
        images = [f for f in OutputSpec.from_schema(self.output_schema).file_fields if f.kind == "image"]
        return bool(images) and all(f.many for f in images)

    @property
    def returned_cap(self) -> int:
        """Billed units above which a task pays for images it does not return: ``n`` of image-o1
        (one image file, whatever ``n``); no cap for an app returning a list of images, or
        billing another unit."""
        return sys.maxsize if self.returns_every_image else self.pricing.returned_cap

    def with_price(self, microcents_per_unit: int) -> AppSpec:
        """A copy priced differently (a recipe's ``price`` override): that one exact unit price."""
        pricing = replace(
            self.pricing, microcents_per_unit=microcents_per_unit, rates=(), confidence="exact",
            min_microcents_per_unit=None, max_microcents_per_unit=None,
        )
        return replace(self, pricing=pricing)


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
        input_schema = _read_json(directory / meta["input_schema"])
        pixels = {
            res: {ratio: (int(wh[0]), int(wh[1])) for ratio, wh in table.items()}
            for res, table in meta.get("output_pixels", {}).items()
        }
        return AppSpec(
            name=str(meta["app"]),
            title=str(meta.get("title", meta["app"])),
            pinned_version=meta.get("pinned_version"),
            input_schema=input_schema,
            output_schema=_read_json(directory / meta["output_schema"]),
            pricing=parse_pricing(meta["pricing"], input_schema),
            output_pixels=pixels,
            directory=directory,
            emulator=dict(meta.get("emulator") or {}),
            source=dict(meta.get("source") or {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SchemaDataError(f"{meta_path}: malformed app data: {exc!r}") from exc


def _accepted(value: Any) -> tuple[Any, ...]:
    values = tuple(value) if isinstance(value, list) else (value,)
    if not all(v is None or isinstance(v, str | int | float) for v in values):
        raise ValueError(f"a rate condition takes JSON scalars or a list of them, got {value!r}")
    return values


def parse_pricing(price: Mapping[str, Any], input_schema: Mapping[str, Any]) -> Pricing:
    """A ``Pricing`` from ``app.json``'s ``pricing`` object (see ``Pricing`` for the keys);
    ``ValueError``/``KeyError``/``TypeError`` when it is malformed."""
    confidence = str(price.get("confidence", "exact"))
    if confidence not in get_args(Confidence):
        raise ValueError(f"confidence must be one of {', '.join(get_args(Confidence))}, got {confidence!r}")
    base = price.get("usd_per_unit")
    if base is None and confidence != "unknown":
        raise KeyError("usd_per_unit")
    quantity_of = str(price.get("quantity_of", "value"))
    if quantity_of not in get_args(QuantityOf):
        raise ValueError(f"quantity_of must be 'value' or 'length', got {quantity_of!r}")
    bounds = {k: parse_usd(price[k]) if price.get(k) is not None else None for k in ("min", "max")}
    if confidence == "range" and None in bounds.values():
        raise ValueError("a range price needs both min and max (USD per unit)")
    properties = input_schema.get("properties", {})
    defaults = {k: prop["default"] for k, prop in properties.items() if isinstance(prop, dict) and "default" in prop}
    quantity_field = str(price.get("quantity_field") or "")
    schema_default = defaults.get(quantity_field)
    fallback = schema_default if isinstance(schema_default, int) and not isinstance(schema_default, bool) else 1
    length_per_unit = int(price.get("length_per_unit", 1))
    if length_per_unit < 1:
        raise ValueError(f"length_per_unit must be >= 1, got {length_per_unit}")
    rates = tuple(
        Rate(tuple((str(k), _accepted(v)) for k, v in dict(r["when"]).items()), parse_usd(r["usd_per_unit"]))
        for r in price.get("rates", ())
    )
    return Pricing(
        microcents_per_unit=parse_usd(base) if base is not None else 0,
        unit=str(price["unit"]),
        quantity_field=quantity_field,
        quantity_default=int(price.get("quantity_default", fallback)),
        images_returned_per_task=int(price.get("images_returned_per_task", 1)),
        source=str(price.get("source", "")),
        read_on=str(price.get("read_on", "")),
        quantity_of="length" if quantity_of == "length" else "value",
        length_per_unit=length_per_unit,
        rates=rates,
        confidence="range" if confidence == "range" else "unknown" if confidence == "unknown" else "exact",
        min_microcents_per_unit=bounds["min"],
        max_microcents_per_unit=bounds["max"],
        note=str(price.get("note", "")),
        defaults=defaults,
    )


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
