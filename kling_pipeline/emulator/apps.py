"""The apps the emulator serves: every bundled app, each with its versions, editable at runtime."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from ..core.schemas import AppSpec, parse_pricing
from .outputs import OutputPlan, plan_outputs
from .problems import Problem
from .validation import InputChecker

__all__ = ["EDITABLE", "AppRegistry", "ServedApp", "app_id_for"]

EDITABLE = frozenset({"version", "title", "input_schema", "output_schema", "pricing", "emulator"})
"""What ``POST /_emulator/apps/{namespace}/{name}`` may change."""


def app_id_for(name: str) -> str:
    """The app's opaque, stable id (what ``app_id`` filters and the estimate path take)."""
    return "app_" + hashlib.sha256(f"kling-emulator-app\x00{name}".encode()).hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class ServedApp:
    """One version of an app, ready to serve: its data, input checker and output plan."""

    spec: AppSpec
    app_id: str
    checker: InputChecker
    plan: OutputPlan
    price_table: Mapping[str, Any]
    """The ``pricing`` object as ``app.json`` writes it."""

    @classmethod
    def of(cls, spec: AppSpec, price_table: Mapping[str, Any]) -> ServedApp:
        """``ValueError`` when the app's schemas or emulator section cannot be served."""
        Draft202012Validator.check_schema(dict(spec.input_schema))
        return cls(spec, app_id_for(spec.name), InputChecker(spec), plan_outputs(spec), dict(price_table))

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def version(self) -> str | None:
        return self.spec.pinned_version


def _price_table(spec: AppSpec) -> dict[str, Any]:
    try:
        table = json.loads((spec.directory / "app.json").read_text(encoding="utf-8"))["pricing"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return dict(table) if isinstance(table, dict) else {}


class AppRegistry:
    """Served apps by name; each keeps its versions, oldest first (the last is current)."""

    def __init__(self, specs: Iterable[AppSpec]) -> None:
        self._versions: dict[str, list[ServedApp]] = {}
        self._ids: dict[str, str] = {}
        for spec in specs:
            try:
                served = ServedApp.of(spec, _price_table(spec))
            except (ValueError, SchemaError) as exc:
                where = spec.directory / "app.json"
                raise ValueError(f"{where}: the emulator cannot serve {spec.name}: {exc}") from exc
            self._versions[spec.name] = [served]
            self._ids[served.app_id] = spec.name

    def names(self) -> list[str]:
        return list(self._versions)

    def current(self, name: str) -> ServedApp | None:
        versions = self._versions.get(name)
        return versions[-1] if versions else None

    def versions(self, name: str) -> list[str]:
        return [v.version for v in self._versions.get(name, ()) if v.version]

    def find(self, ref: str) -> ServedApp | None:
        """The current version of the app with this id or ``namespace/name``."""
        return self.current(self._ids.get(ref, ref))

    def lookup(self, name: str, version: str | None) -> ServedApp:
        """The app version a run names (``None``: the current one); 404 problems otherwise."""
        versions = self._versions.get(name)
        if not versions:
            raise Problem(404, "not_found", "App not found", f"no app named {name!r}")
        if version is None:
            return versions[-1]
        for served in reversed(versions):
            if served.version == version:
                return served
        raise Problem(404, "not_found", "App version not found", f"app {name!r} has no version {version!r}")

    def edit(self, name: str, changes: Mapping[str, Any]) -> ServedApp:
        """Serve a changed app: a new ``version`` is added beside the old ones (which stay
        runnable); without one, the current version is replaced. ``ValueError`` when the
        change is malformed (nothing is changed then)."""
        current = self.current(name)
        if current is None:
            raise LookupError(name)
        unknown = sorted(set(changes) - EDITABLE)
        if unknown:
            raise ValueError(f"cannot edit {', '.join(unknown)} (editable: {', '.join(sorted(EDITABLE))})")
        spec = current.spec
        for key in ("input_schema", "output_schema", "emulator"):
            if key in changes and not isinstance(changes[key], dict):
                raise ValueError(f"{key} must be a JSON object")
        input_schema = changes.get("input_schema", spec.input_schema)
        table = dict(current.price_table)
        if "pricing" in changes:  # merged into the current table; a null removes a key
            if not isinstance(changes["pricing"], dict):
                raise ValueError("pricing must be a JSON object (keys as in app.json)")
            table = {k: v for k, v in {**table, **changes["pricing"]}.items() if v is not None}
        version = changes.get("version", spec.pinned_version)
        if version is not None and (not isinstance(version, str) or not version.strip() or "@" in version):
            raise ValueError("version must be a non-empty string without '@'")
        try:
            pricing = parse_pricing(table, input_schema)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed pricing: {exc!r}") from None
        new = replace(
            spec,
            title=str(changes.get("title", spec.title)),
            pinned_version=version,
            input_schema=input_schema,
            output_schema=changes.get("output_schema", spec.output_schema),
            pricing=pricing,
            emulator=changes.get("emulator", spec.emulator),
        )
        try:
            served = ServedApp.of(new, table)
        except SchemaError as exc:
            raise ValueError(f"input_schema is not a valid JSON Schema: {exc.message}") from None
        versions = self._versions[name]
        if version != spec.pinned_version:
            versions[:] = [v for v in versions if v.version != version]
            versions.append(served)
        else:
            versions[-1] = served
        return served
