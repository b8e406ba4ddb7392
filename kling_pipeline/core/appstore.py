"""The schema store: apps' schemas and prices as ``schema pull`` read them from the service.

A directory, ``kling-schemas/`` by default, holding one JSON file per app version,
``<namespace>/<name>/<version>.json`` (a ``StoredApp``): the input and output schemas,
the price table (``app.json``'s ``pricing`` keys, with its confidence and source), the
date it was read and the URL it was read from. It belongs to the project, next to its
recipes and under version control like them.

Where it is: ``$KLING_PIPELINE_SCHEMAS`` when set, else the nearest ``kling-schemas/``
directory in the recipe's directory or above it (as git finds ``.git``). The data
bundled with kling-pipeline (``schemas/``, read-only) is the fallback. ``resolve_app``
says which one a recipe's ``app`` uses:

- ``ns/name@version``: that version, pulled (else the bundled data when it is of that
  version); never pulled: an error naming the ``schema pull`` to run;
- ``ns/name``: the newest version pulled, else the bundled one (the plan warns that it
  is not pinned); neither: an error naming the ``schema pull`` to run.

Reads only; ``schema pull`` (``cli/_schema.py``) writes.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import SchemaDataError
from .money import usd_decimal
from .schemas import AppRef, AppSpec, Pricing, UnknownAppError, known_apps, load_app, parse_pricing, schemas_root

__all__ = [
    "STORED_FORMAT",
    "STORE_DIRNAME",
    "STORE_ENV",
    "Resolved",
    "SchemaStore",
    "StoredApp",
    "locate_store",
    "pricing_table",
    "resolve_app",
    "safe_part",
]

STORE_ENV = "KLING_PIPELINE_SCHEMAS"
STORE_DIRNAME = "kling-schemas"
STORED_FORMAT = "kling-pipeline.app/1"
_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def safe_part(text: str) -> bool:
    """A namespace, name or version id that can name a file as it is."""
    return bool(_PART.fullmatch(text)) and ".." not in text


def pricing_table(pricing: Pricing) -> dict[str, Any]:
    """``pricing`` as ``app.json`` writes it (dollar amounts as decimal strings)."""
    table: dict[str, Any] = {"unit": pricing.unit, "confidence": pricing.confidence}
    if pricing.confidence != "unknown" or pricing.microcents_per_unit:
        table["usd_per_unit"] = usd_decimal(pricing.microcents_per_unit)
    if pricing.quantity_field:
        table["quantity_field"] = pricing.quantity_field
        table["quantity_default"] = pricing.quantity_default
    if pricing.quantity_of == "length":
        table["quantity_of"] = "length"
        table["length_per_unit"] = pricing.length_per_unit
    if pricing.rates:
        table["rates"] = [{"when": {k: list(v) if len(v) > 1 else v[0] for k, v in r.when},
                           "usd_per_unit": usd_decimal(r.microcents_per_unit)} for r in pricing.rates]
    if pricing.confidence == "range":
        table["min"] = usd_decimal(pricing.min_microcents_per_unit or 0)
        table["max"] = usd_decimal(pricing.max_microcents_per_unit or 0)
    if pricing.images_returned_per_task != 1:
        table["images_returned_per_task"] = pricing.images_returned_per_task
    for key in ("note", "source", "read_on"):
        if getattr(pricing, key):
            table[key] = getattr(pricing, key)
    return table


@dataclass(frozen=True, slots=True)
class StoredApp:
    """One app version as the service described it (one file of the store)."""

    name: str  # namespace/name
    version: str
    app_id: str
    title: str
    read_at: str  # ISO 8601, UTC
    read_from: str  # the URL of GET /apps/{namespace}/{name}
    current: bool  # the service's current version when it was read
    versions: tuple[str, ...]  # the versions the service listed then
    input_schema: Mapping[str, Any]
    output_schema: Mapping[str, Any]
    pricing: Mapping[str, Any]  # app.json's ``pricing`` keys
    price_from: str  # how the price was read: "app document", "estimate endpoint", "bundled data"

    def document(self) -> dict[str, Any]:
        return {
            "format": STORED_FORMAT, "app": self.name, "version": self.version, "id": self.app_id,
            "title": self.title, "read_at": self.read_at, "read_from": self.read_from, "current": self.current,
            "versions": list(self.versions), "price_from": self.price_from, "pricing": dict(self.pricing),
            "input_schema": self.input_schema, "output_schema": self.output_schema,
        }

    def encode(self) -> bytes:
        return (json.dumps(self.document(), indent=2, ensure_ascii=False) + "\n").encode("utf-8")

    @classmethod
    def from_document(cls, doc: Any) -> StoredApp:
        """``ValueError`` (or ``KeyError``/``TypeError``) when ``doc`` is not a stored app."""
        if not isinstance(doc, Mapping) or doc.get("format") != STORED_FORMAT:
            raise ValueError(f"not a {STORED_FORMAT} document")
        schemas = doc["input_schema"], doc["output_schema"], doc["pricing"]
        if not all(isinstance(s, Mapping) for s in schemas):
            raise TypeError("input_schema, output_schema and pricing must be JSON objects")
        return cls(str(doc["app"]), str(doc["version"]), str(doc.get("id") or ""), str(doc.get("title") or ""),
                   str(doc.get("read_at") or ""), str(doc.get("read_from") or ""), bool(doc.get("current")),
                   tuple(str(v) for v in doc.get("versions") or ()), schemas[0], schemas[1], schemas[2],
                   str(doc.get("price_from") or ""))

    @classmethod
    def from_spec(cls, spec: AppSpec) -> StoredApp:
        """The bundled data of an app, in the store's shape (to compare a pull with)."""
        return cls(spec.name, spec.pinned_version or "", "", spec.title, str(spec.source.get("read_on") or ""),
                   str(spec.source.get("repository") or "bundled data"), True, (), spec.input_schema,
                   spec.output_schema, pricing_table(spec.pricing), "bundled data")

    def spec(self, directory: Path) -> AppSpec:
        """The app as a plan uses it; ``ValueError``/``KeyError``/``TypeError`` when the price is malformed."""
        return AppSpec(
            name=self.name, title=self.title or self.name, pinned_version=self.version,
            input_schema=self.input_schema, output_schema=self.output_schema,
            pricing=parse_pricing(self.pricing, self.input_schema), output_pixels={}, directory=directory,
            source={"read_from": self.read_from, "read_at": self.read_at, "price_from": self.price_from},
        )


@dataclass(frozen=True, slots=True)
class SchemaStore:
    """A schema store directory (it may not exist yet: ``schema pull`` creates it)."""

    root: Path

    def file_for(self, name: str, version: str) -> Path:
        namespace, _, app = name.partition("/")
        if not all(safe_part(p) for p in (namespace, app, version)):
            raise ValueError(f"{name}@{version} cannot name a file of the schema store "
                             "(letters, digits, '.', '_' and '-' only)")
        return self.root / namespace / app / f"{version}.json"

    def read(self, path: Path) -> StoredApp:
        try:
            return StoredApp.from_document(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SchemaDataError(f"{path}: not a schema pulled by kling-pipeline ({exc}); pull it again") from None

    def load(self, name: str, version: str) -> StoredApp | None:
        try:
            path = self.file_for(name, version)
        except ValueError:
            return None
        return self.read(path) if path.is_file() else None

    def pulled(self, name: str) -> list[StoredApp]:
        """Every version of ``name`` in the store, oldest read first."""
        namespace, _, app = name.partition("/")
        if not (safe_part(namespace) and safe_part(app)):
            return []
        folder = self.root / namespace / app
        found = [self.read(p) for p in sorted(folder.glob("*.json")) if p.is_file()] if folder.is_dir() else []
        return sorted(found, key=lambda s: (s.read_at, s.version))

    def newest(self, name: str) -> StoredApp | None:
        """The version that was current at the latest pull (else the latest read)."""
        pulled = self.pulled(name)
        current = [s for s in pulled if s.current] or pulled
        return current[-1] if current else None

    def apps(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted({f"{p.parent.parent.name}/{p.parent.name}" for p in self.root.glob("*/*/*.json")})

    def spec(self, stored: StoredApp) -> AppSpec:
        path = self.file_for(stored.name, stored.version)
        try:
            return stored.spec(path.parent)
        except (KeyError, TypeError, ValueError) as exc:
            raise SchemaDataError(f"{path}: malformed price table: {exc!r}; pull it again") from None


def locate_store(start: Path | None, environ: Mapping[str, str] | None = None) -> SchemaStore | None:
    """``$KLING_PIPELINE_SCHEMAS``, else the nearest ``kling-schemas/`` in ``start`` or above; None
    when there is none (``environ`` defaults to the process's environment, read when called)."""
    env = os.environ if environ is None else environ
    named = env.get(STORE_ENV, "").strip()
    if named:
        return SchemaStore(Path(named).expanduser())
    if start is None:
        return None
    here = start.resolve()
    for folder in (here, *here.parents):
        if (folder / STORE_DIRNAME).is_dir():
            return SchemaStore(folder / STORE_DIRNAME)
    return None


@dataclass(frozen=True, slots=True)
class Resolved:
    """The app data a recipe's ``app`` uses, and where it came from."""

    spec: AppSpec
    origin: str  # "store" or "bundled"
    path: Path  # the stored file, or the bundled app.json


def _bundled(name: str, root: Path | None) -> AppSpec | None:
    base = root or schemas_root()
    return load_app(name, base) if (base / name / "app.json").is_file() else None


def resolve_app(ref: AppRef, store: SchemaStore | None, bundled_root: Path | None = None) -> Resolved:
    """The data for ``ref`` (see the module's docs); ``UnknownAppError`` saying what to pull."""
    bundled = _bundled(ref.name, bundled_root)
    if store is not None:
        stored = store.load(ref.name, ref.version) if ref.version else store.newest(ref.name)
        if stored is not None:
            return Resolved(store.spec(stored), "store", store.file_for(stored.name, stored.version))
    if bundled is not None and (ref.version is None or ref.version == bundled.pinned_version):
        return Resolved(bundled, "bundled", bundled.directory / "app.json")
    where = f" (schema store: {store.root})" if store is not None else ""
    if ref.version is None:
        apps = ", ".join(known_apps(bundled_root)) or "none"
        raise UnknownAppError(f"no schema for app {ref.name!r}: run `kling-pipeline schema pull {ref.name}` "
                              f"to fetch it{where} (bundled apps: {apps})")
    held = list(dict.fromkeys(s.version for s in store.pulled(ref.name))) if store is not None else []
    if bundled is not None and bundled.pinned_version and bundled.pinned_version not in held:
        held.append(f"{bundled.pinned_version} (bundled)")
    have = f"; this project has {', '.join(held)}" if held else ""
    raise UnknownAppError(f"version {ref.version!r} of app {ref.name} was never pulled{have}: run "
                          f"`kling-pipeline schema pull {ref}`{where}")
