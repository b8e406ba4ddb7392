"""What changed between two descriptions of an app: fields added, removed, retyped, enum
values, limits, defaults, required-ness, and the price. Pure: two ``StoredApp`` in, lines out.

A field's type reads as JSON Schema says it, through ``$ref`` and ``anyOf``/``oneOf``:
``integer``, ``string (file) | null``, ``array of string (file)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .appstore import StoredApp
from .jsonref import follow_ref
from .money import format_usd
from .schemas import Pricing, Rate, parse_pricing

__all__ = ["app_changes", "field_changes", "price_changes", "price_summary", "type_text"]

LIMITS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "minItems",
          "maxItems", "multipleOf", "pattern")


def _options(node: Mapping[str, Any], root: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    subs = [follow_ref(s, root) for key in ("anyOf", "oneOf") for s in node.get(key) or ()]
    return [o for sub in subs for o in _options(sub, root)] if subs else [node]


def _one(option: Mapping[str, Any], root: Mapping[str, Any]) -> str:
    kind = option.get("type")
    text = " | ".join(map(str, kind)) if isinstance(kind, list) else str(kind) if kind else "any"
    if option.get("format") == "file":
        text += " (file)"
    if kind == "array":
        text += " of " + " | ".join(_one(o, root) for o in _options(follow_ref(option.get("items", {}), root), root))
    return text


def type_text(node: Any, root: Mapping[str, Any]) -> str:
    """``integer``, ``string (file) | null``, ``array of string (file)``."""
    texts = []
    for option in _options(follow_ref(node, root), root):
        text = _one(option, root)
        if text not in texts:
            texts.append(text)
    return " | ".join(texts)


def _enum(node: Any, root: Mapping[str, Any]) -> list[Any] | None:
    values = [v for o in _options(follow_ref(node, root), root) for v in o.get("enum") or ()]
    return values or None


def _limits(node: Any, root: Mapping[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for option in [follow_ref(node, root), *_options(follow_ref(node, root), root)]:
        for key in LIMITS:
            if key in option:
                found.setdefault(key, option[key])
    return found


def _show(value: Any) -> str:
    return "none" if value is None else json.dumps(value, ensure_ascii=False)


def _values(values: list[Any]) -> str:
    return ", ".join(v if isinstance(v, str) else json.dumps(v) for v in values)


def _describe(node: Any, root: Mapping[str, Any], required: bool) -> str:
    parts = [type_text(node, root)]
    enum = _enum(node, root)
    if enum:
        parts.append(f"one of {_values(enum)}")
    if required:
        parts.append("required")
    resolved = follow_ref(node, root)
    if "default" in resolved:
        parts.append(f"default {_show(resolved['default'])}")
    return ", ".join(parts)


def field_changes(where: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Lines saying how the fields of schema ``new`` differ from ``old``'s (``where``: input/output)."""
    old_props, new_props = old.get("properties") or {}, new.get("properties") or {}
    old_req, new_req = set(old.get("required") or ()), set(new.get("required") or ())
    lines: list[str] = []
    for name in new_props:
        if name not in old_props:
            lines.append(f"{where}.{name}: added ({_describe(new_props[name], new, name in new_req)})")
    for name in old_props:
        if name not in new_props:
            lines.append(f"{where}.{name}: removed")
    for name in new_props:
        if name in old_props:
            lines += [f"{where}.{name}: {change}" for change in _field(old_props[name], old, new_props[name], new)]
            if (name in old_req) != (name in new_req):
                lines.append(f"{where}.{name}: {'now required' if name in new_req else 'no longer required'}")
    return lines


def _field(old: Any, old_root: Mapping[str, Any], new: Any, new_root: Mapping[str, Any]) -> list[str]:
    changes = []
    before, after = type_text(old, old_root), type_text(new, new_root)
    if before != after:
        changes.append(f"retyped: {before} -> {after}")
    old_enum, new_enum = _enum(old, old_root) or [], _enum(new, new_root) or []
    added = [v for v in new_enum if v not in old_enum]
    dropped = [v for v in old_enum if v not in new_enum]
    if added and old_enum:
        changes.append(f"new enum values: {_values(added)}")
    if dropped and new_enum:
        changes.append(f"enum values removed: {_values(dropped)}")
    if bool(old_enum) != bool(new_enum):
        changes.append(f"now one of {_values(new_enum)}" if new_enum else "no longer an enum")
    old_limits, new_limits = _limits(old, old_root), _limits(new, new_root)
    for key in LIMITS:
        if old_limits.get(key) != new_limits.get(key):
            changes.append(f"{key} {_show(old_limits.get(key))} -> {_show(new_limits.get(key))}")
    old_default, new_default = follow_ref(old, old_root), follow_ref(new, new_root)
    if ("default" in old_default, old_default.get("default")) != ("default" in new_default, new_default.get("default")):
        changes.append(f"default {_show(old_default.get('default'))} -> {_show(new_default.get('default'))}")
    return changes


def _when(rate: Rate) -> str:
    """``mode=std, reference_video=null`` (the fields in name order: the same rate reads the same)."""
    return ", ".join(f"{k}={'|'.join('null' if v is None else str(v) for v in vs)}" for k, vs in sorted(rate.when))


def _per(pricing: Pricing, microcents: int) -> str:
    return f"{format_usd(microcents)}/{pricing.unit}"


def price_changes(old: Pricing, new: Pricing) -> list[str]:
    """Lines saying how price table ``new`` differs from ``old`` (where and when read aside)."""
    lines = []
    if old.unit != new.unit:
        lines.append(f"price: billed per {old.unit} -> per {new.unit}")
    if old.confidence != new.confidence:
        lines.append(f"price: {old.confidence} -> {new.confidence}")
    if old.microcents_per_unit != new.microcents_per_unit:
        lines.append(f"price: {_per(old, old.microcents_per_unit)} -> {_per(new, new.microcents_per_unit)}")
    if (old.quantity_field, old.quantity_of, old.length_per_unit) != (
            new.quantity_field, new.quantity_of, new.length_per_unit):
        lines.append(f"price: quantity {_quantity(old)} -> {_quantity(new)}")
    before = {_when(r): r.microcents_per_unit for r in old.rates}
    after = {_when(r): r.microcents_per_unit for r in new.rates}
    for when, price in after.items():
        if when not in before:
            lines.append(f"price: new rate when {when}: {_per(new, price)}")
        elif before[when] != price:
            lines.append(f"price: rate when {when}: {_per(old, before[when])} -> {_per(new, price)}")
    lines += [f"price: rate when {when} removed" for when in before if when not in after]
    bounds = (old.min_microcents_per_unit, old.max_microcents_per_unit)
    if new.confidence == "range" and bounds != (new.min_microcents_per_unit, new.max_microcents_per_unit):
        lines.append(f"price: range {_range(old)} -> {_range(new)}")
    return lines


def _quantity(p: Pricing) -> str:
    if not p.quantity_field:
        return "one a task"
    if p.quantity_of == "length":
        per = f" / {p.length_per_unit}" if p.length_per_unit > 1 else ""
        return f"length of {p.quantity_field}{per}"
    return f"from {p.quantity_field}"


def price_summary(p: Pricing) -> str:
    """``$0.112/second x duration, 4 rates by mode, reference_video (exact)``, ``$0.0387 to
    $0.12062/image x num_images (a range; typically $0.039/image)``, ``unknown`` and why."""
    if p.confidence == "unknown":
        return f"unknown{': ' + p.note if p.note else ''}"
    price = _range(p) if p.confidence == "range" else _per(p, p.microcents_per_unit)
    if p.quantity_field:
        price += f" x length of {p.quantity_field}" if p.quantity_of == "length" else f" x {p.quantity_field}"
    fields = sorted({k for r in p.rates for k, _ in r.when})
    if fields:
        price += f", {len(p.rates)} rate{'s' if len(p.rates) != 1 else ''} by {', '.join(fields)}"
    if p.confidence == "range":
        return f"{price} (a range; typically {_per(p, p.microcents_per_unit)})"
    return f"{price} (exact)"


def _range(p: Pricing) -> str:
    if p.min_microcents_per_unit is None or p.max_microcents_per_unit is None:
        return "none"
    return f"{format_usd(p.min_microcents_per_unit)} to {_per(p, p.max_microcents_per_unit)}"


def app_changes(old: StoredApp, new: StoredApp) -> list[str]:
    """Every change from ``old`` to ``new``: version, input and output fields, price."""
    lines = []
    if old.version != new.version:
        lines.append(f"version: {old.version or 'none'} -> {new.version}")
    lines += field_changes("input", old.input_schema, new.input_schema)
    lines += field_changes("output", old.output_schema, new.output_schema)
    try:
        before = parse_pricing(old.pricing, old.input_schema)
    except (KeyError, TypeError, ValueError):
        return [*lines, "price: the earlier price table is malformed"]
    lines += price_changes(before, parse_pricing(new.pricing, new.input_schema))
    return lines
