"""The apps: ``GET /apps/{namespace}/{name}``, the estimate, and their runtime edit (admin)."""

from __future__ import annotations

from typing import Any

from ..core.money import format_usd
from ..core.schemas import Pricing
from .apps import ServedApp
from .asgi import Request, send_json
from .problems import Problem
from .state import EmulatorState

__all__ = ["app_document", "edit_app", "estimate", "get_app", "get_apps", "price_description", "pricing_document"]


def pricing_document(pricing: Pricing) -> dict[str, Any]:
    """The price table in microcents, as the app document shows it (enough to write ``app.json``'s back)."""
    document: dict[str, Any] = {
        "microcents_per_unit": pricing.microcents_per_unit,
        "unit": pricing.unit,
        "quantity_field": pricing.quantity_field or None,
        "quantity_of": pricing.quantity_of,
        "confidence": pricing.confidence,
    }
    if pricing.quantity_of == "length":
        document["length_per_unit"] = pricing.length_per_unit
    if pricing.rates:
        document["rates"] = [
            {"when": {k: list(v) if len(v) > 1 else v[0] for k, v in r.when},
             "microcents_per_unit": r.microcents_per_unit}
            for r in pricing.rates
        ]
    if pricing.confidence == "range":
        document["min_microcents_per_unit"] = pricing.min_microcents_per_unit
        document["max_microcents_per_unit"] = pricing.max_microcents_per_unit
    if pricing.note:
        document["description"] = pricing.note
    return document


def app_document(served: ServedApp, versions: list[str]) -> dict[str, Any]:
    spec = served.spec
    namespace, _, name = spec.name.partition("/")
    return {
        "id": served.app_id,
        "namespace": namespace,
        "name": name,
        "title": spec.title,
        "version_id": spec.pinned_version,
        # The versions a pin may name (``app@version``); the current one is last.
        "versions": [{"id": v} for v in versions],
        "version": {
            "id": spec.pinned_version,
            "input_schema": spec.input_schema,
            "output_schema": spec.output_schema,
        },
        "input_schema": spec.input_schema,
        "output_schema": spec.output_schema,
        "pricing": pricing_document(spec.pricing),
    }


async def get_app(st: EmulatorState, req: Request, key: str) -> None:
    name = f"{req.params['namespace']}/{req.params['name']}"
    served = st.apps.current(name)
    if served is None:
        raise Problem(404, "not_found", "App not found", f"no app named '{name}'")
    await send_json(req.send, {"data": app_document(served, st.apps.versions(name))})


def price_description(pricing: Pricing, value: dict[str, Any]) -> str:
    """``$0.028 per image x n``, ``$0.13 per run``, ``$0.00017 per character x length of text``."""
    price = format_usd(pricing.unit_price(value))
    if pricing.confidence == "range":
        low, high = (format_usd(p or 0) for p in (pricing.min_microcents_per_unit, pricing.max_microcents_per_unit))
        price = f"{low} to {high} (typically {price})"
    elif pricing.confidence == "unknown":
        return f"price unknown{': ' + pricing.note if pricing.note else ''}"
    if not pricing.quantity_field:
        return f"{price} per {pricing.unit}"
    if pricing.quantity_of == "length":
        per = f" / {pricing.length_per_unit}" if pricing.length_per_unit > 1 else ""
        return f"{price} per {pricing.unit} x length of {pricing.quantity_field}{per}"
    return f"{price} per {pricing.unit} x {pricing.quantity_field}"


async def estimate(st: EmulatorState, req: Request, key: str) -> None:
    app_ref = req.params.get("app_id") or f"{req.params.get('namespace')}/{req.params.get('name')}"
    served = st.apps.find(app_ref)
    if served is None:
        raise Problem(404, "not_found", "App not found", f"no app with id {app_ref!r}")
    body = await req.json_object(st.cfg.max_json_bytes)
    unknown = sorted(set(body) - {"input", "function"})
    if unknown:
        raise Problem(400, "invalid_request", "Unknown request keys", f"unknown key(s): {', '.join(unknown)}")
    value = body.get("input", {})
    errors = served.checker.violations(value, req.netloc, None)
    if errors or not isinstance(value, dict):
        detail = "; ".join(f"{e['path'] or '(input)'}: {e['message']}" for e in errors) or "input must be an object"
        raise Problem(422, "invalid_input", "Input does not match the app's schema", detail, errors=errors)
    pricing = served.spec.pricing
    bounds = pricing.cost_range(value)
    data: dict[str, Any] = {"confidence": pricing.confidence}
    if pricing.confidence == "exact":
        data["microcents"] = pricing.cost(value)
    elif bounds is not None:
        data["min"], data["max"] = bounds
    data["pricing_description"] = price_description(pricing, value)
    await send_json(req.send, {"data": data})


async def get_apps(st: EmulatorState, req: Request, key: str) -> None:
    """``GET /_emulator/apps``: every served app with its id and versions."""
    apps = [
        {"app": name, "id": served.app_id, "version_id": served.version, "versions": st.apps.versions(name)}
        for name in st.apps.names()
        if (served := st.apps.current(name)) is not None
    ]
    await send_json(req.send, {"data": apps})


async def edit_app(st: EmulatorState, req: Request, key: str) -> None:
    """``POST /_emulator/apps/{namespace}/{name}``: change the app's schemas, price or version
    (see ``AppRegistry.edit``); answers the new app document."""
    name = f"{req.params['namespace']}/{req.params['name']}"
    if st.apps.current(name) is None:
        raise Problem(404, "not_found", "App not found", f"no app named '{name}'")
    body = await req.json_object(st.cfg.max_json_bytes)
    try:
        served = st.apps.edit(name, body)
    except ValueError as exc:
        raise Problem(400, "invalid_request", "Bad app change", str(exc)) from None
    await send_json(req.send, {"data": app_document(served, st.apps.versions(name))})
