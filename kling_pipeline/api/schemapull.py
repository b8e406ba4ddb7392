"""``schema pull``: read an app from the service as the schema store keeps it.

``GET /apps/{namespace}/{name}`` gives the current version id, the versions, the input
and output schemas and (where the service publishes it) the price table. The price
comes from that table, else from the estimate endpoint (``priceprobe``): either way it
ends as ``app.json``'s ``pricing`` keys, with its confidence, its source and the date.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from ..core.appstore import StoredApp
from ..core.money import usd_decimal
from ..core.schemas import AppRef, parse_pricing
from .apierrors import BadRequest, NotFound
from .client import ApiClient
from .preflight import AppUnavailable
from .priceprobe import probe_price

__all__ = ["PriceFrom", "pull_app", "table_from_document"]

PriceFrom = Literal["auto", "app", "estimate"]


def _microcents(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a whole number of microcents, got {value!r}")
    return value


def table_from_document(price: Mapping[str, Any]) -> dict[str, Any]:
    """The app document's ``pricing`` (money in microcents) as ``app.json`` writes it (USD
    strings); ``ValueError``/``KeyError``/``TypeError`` when it cannot be read."""
    table: dict[str, Any] = {"unit": str(price["unit"]), "confidence": str(price.get("confidence") or "exact")}
    if price.get("microcents_per_unit") is not None:
        table["usd_per_unit"] = usd_decimal(_microcents(price["microcents_per_unit"], "microcents_per_unit"))
    if price.get("quantity_field"):
        table["quantity_field"] = str(price["quantity_field"])
    if price.get("quantity_of"):
        table["quantity_of"] = str(price["quantity_of"])
    if price.get("length_per_unit") is not None:
        table["length_per_unit"] = int(price["length_per_unit"])
    rates = price.get("rates") or []
    if rates:
        table["rates"] = [{"when": dict(r["when"]), "usd_per_unit": usd_decimal(
            _microcents(r["microcents_per_unit"], "a rate's microcents_per_unit"))} for r in rates]
    for key, name in (("min_microcents_per_unit", "min"), ("max_microcents_per_unit", "max")):
        if price.get(key) is not None:
            table[name] = usd_decimal(_microcents(price[key], key))
    if price.get("description"):
        table["note"] = str(price["description"])
    return table


def _version(doc: Mapping[str, Any]) -> str:
    current = doc.get("version")
    found = doc.get("version_id") or (current.get("id") if isinstance(current, Mapping) else None)
    if not isinstance(found, str) or not found:
        raise BadRequest(f"app {doc.get('namespace')}/{doc.get('name')}: the answer names no current version")
    return found


def _schema(doc: Mapping[str, Any], key: str, name: str) -> Mapping[str, Any]:
    current = doc.get("version")
    found = doc.get(key) or (current.get(key) if isinstance(current, Mapping) else None)
    if not isinstance(found, Mapping):
        raise BadRequest(f"app {name}: the answer has no {key}")
    return found


def _versions(doc: Mapping[str, Any]) -> tuple[str, ...]:
    out = []
    for item in doc.get("versions") or ():
        vid = item.get("id") if isinstance(item, Mapping) else item
        if isinstance(vid, str) and vid:
            out.append(vid)
    return tuple(out)


async def pull_app(api: ApiClient, base_url: str, ref: AppRef, *, now: datetime, price_from: PriceFrom = "auto",
                   earlier: StoredApp | None = None) -> StoredApp:
    """The app as the service describes it now. ``ref.version``, when given, must be the
    current one (the service serves only the current version's schemas); ``earlier`` lends the
    facts the service does not publish (``images_returned_per_task``)."""
    try:
        doc = await api.get_app(ref.name)
    except NotFound:
        raise AppUnavailable(f"the service has no app {ref.name!r} (GET /apps/{ref.name} answered 404); check "
                             "its name on inference.sh", status=404) from None
    version = _version(doc)
    if ref.version and ref.version != version:
        listed = _versions(doc)
        known = f" (it lists {', '.join(listed)})" if listed else ""
        raise AppUnavailable(f"the current version of {ref.name} is {version}, not {ref.version}{known}; the service "
                             f"serves the schemas of its current version only: pull {ref.name}@{version}")
    input_schema, output_schema = _schema(doc, "input_schema", ref.name), _schema(doc, "output_schema", ref.name)
    url = f"{base_url.rstrip('/')}/apps/{ref.name}"
    read_on = now.strftime("%Y-%m-%d")
    price = doc.get("pricing")
    if price_from == "app" and not isinstance(price, Mapping):
        raise BadRequest(f"app {ref.name}: the app document publishes no price table (try --price-from estimate)")
    if price_from != "estimate" and isinstance(price, Mapping):
        try:
            table = table_from_document(price)
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest(f"app {ref.name}: its price table cannot be read: {exc!r}") from None
        table["source"], origin = f"GET {url} (pricing)", "app document"
    else:
        app_id = str(doc.get("id") or ref.name)
        table, asked = await probe_price(api, app_id, input_schema)
        table["source"], origin = f"POST /store/apps/{app_id}/estimate ({asked} requests)", "estimate endpoint"
    table["read_on"] = read_on
    if earlier is not None and earlier.pricing.get("unit") == table["unit"]:
        for key in ("images_returned_per_task",):  # what the service does not say
            if key in earlier.pricing:
                table[key] = earlier.pricing[key]
    try:
        parse_pricing(table, input_schema)
    except (KeyError, TypeError, ValueError) as exc:
        raise BadRequest(f"app {ref.name}: its price table cannot be used: {exc!r}") from None
    return StoredApp(
        name=ref.name, version=version, app_id=str(doc.get("id") or ""), title=str(doc.get("title") or ""),
        read_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"), read_from=url, current=True, versions=_versions(doc),
        input_schema=input_schema, output_schema=output_schema, pricing=table, price_from=origin,
    )
