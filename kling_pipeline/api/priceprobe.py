"""A price table read from the estimate endpoint, for an app that publishes none.

``POST /store/apps/{appId}/estimate`` prices one request. Asked about a small request
(the required fields, at their smallest) and about that request with one field changed
at a time, it shows which inputs change the price and how:

- the quantity: an integer field whose every step adds the same amount (``duration``,
  ``n``), else a text whose every character does (``text``); none: a price per run;
- rates: the fields of few values (enums, booleans, an optional file given or not) that
  change the price of a unit; their combinations, priced one by one, become ``rates``;
- the confidence: the least sure answer (``exact``, ``range``, ``unknown``); the unit:
  the word after "per" in the endpoint's ``pricing_description``.

Each distinct request is asked once. Reads only: nothing is run, nothing is billed.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..core.jsonref import follow_ref
from ..core.money import usd_decimal
from .apierrors import ApiError
from .client import ApiClient

__all__ = ["PROBE_URL", "probe_price"]

PROBE_URL = "https://example.com/kling-pipeline-price-probe.png"
MAX_VALUES = 16  # values of one field tried
MAX_COMBOS = 64  # combinations of rate fields priced
TEXT_LENGTHS = (10, 110)
_UNIT = re.compile(r"\bper ([a-z]+)")
_ORDER = {"exact": 0, "range": 1, "unknown": 2}


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    kind: str  # enum, integer, text, file, boolean, other
    values: tuple[Any, ...] = ()
    default: Any = None
    has_default: bool = False
    minimum: int | None = None
    maximum: int | None = None
    max_length: int | None = None
    required: bool = False


def _field(name: str, node: Any, root: Mapping[str, Any], required: bool) -> _Field:
    top = follow_ref(node, root)
    options = [follow_ref(o, root) for o in top.get("anyOf") or top.get("oneOf") or [top]]
    options = [o for o in options if o.get("type") != "null"] or [top]
    first = options[0]
    kind, values, low, high, longest = str(first.get("type") or "other"), (), None, None, None
    enum = [v for o in options for v in o.get("enum") or ()]
    if enum:
        kind, values = "enum", tuple(enum[:MAX_VALUES])
    elif first.get("format") == "file":
        kind = "file"
    elif kind == "integer":
        low, high = first.get("minimum"), first.get("maximum")
    elif kind == "string":
        kind, longest = "text", first.get("maxLength")
    elif kind != "boolean":
        kind = "other"
    return _Field(name, kind, values, top.get("default"), "default" in top, low if isinstance(low, int) else None,
                  high if isinstance(high, int) else None, longest if isinstance(longest, int) else None, required)


def _fields(schema: Mapping[str, Any]) -> list[_Field]:
    required = set(schema.get("required") or ())
    props = schema.get("properties") or {}
    return [_field(str(k), v, schema, k in required) for k, v in props.items()]


def _smallest(f: _Field) -> Any:
    if f.has_default and f.default is not None:
        return f.default
    return {"enum": f.values[0] if f.values else None, "integer": f.minimum if f.minimum is not None else 1,
            "text": "a", "file": PROBE_URL, "boolean": False}.get(f.kind)


@dataclass(frozen=True, slots=True)
class _Answer:
    confidence: str
    low: int | None
    high: int | None
    description: str


class _Asker:
    """Estimates, each distinct request asked once."""

    def __init__(self, api: ApiClient, app_id: str) -> None:
        self.api, self.app_id = api, app_id
        self.asked: dict[str, _Answer | None] = {}

    async def __call__(self, request: Mapping[str, Any]) -> _Answer | None:
        key = json.dumps(request, sort_keys=True, default=str)
        if key not in self.asked:
            try:
                got = await self.api.estimate(self.app_id, request)
            except ApiError as exc:
                if exc.fatal:
                    raise
                got = None
            self.asked[key] = None if got is None else _answer(got)
        return self.asked[key]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _answer(got: Mapping[str, Any]) -> _Answer:
    confidence = str(got.get("confidence") or "unknown")
    exact = _int(got.get("microcents"))
    low, high = (exact, exact) if exact is not None else (_int(got.get("min")), _int(got.get("max")))
    if confidence not in _ORDER or high is None:
        confidence, low, high = "unknown", None, None
    return _Answer(confidence, low, high, str(got.get("pricing_description") or ""))


class _Probe:
    def __init__(self, ask: _Asker, fields: list[_Field], base: dict[str, Any]) -> None:
        self.ask, self.fields, self.base = ask, fields, base
        self.quantity: tuple[str, str] | None = None  # (field, "value" | "length")
        self.answers: list[_Answer] = []

    async def price(self, changes: Mapping[str, Any]) -> _Answer | None:
        answer = await self.ask({**self.base, **changes})
        if answer is not None:
            self.answers.append(answer)
        return answer

    def units(self, request: Mapping[str, Any]) -> int:
        if self.quantity is None:
            return 1
        name, of = self.quantity
        value = request.get(name, next((f.default for f in self.fields if f.name == name), None))
        if of == "length":
            return len(value) if isinstance(value, str) else 1
        return value if isinstance(value, int) and value > 0 else 1

    async def per_unit(self, changes: Mapping[str, Any]) -> int | None:
        answer = await self.price(changes)
        if answer is None or answer.high is None:
            return None
        return answer.high // self.units({**self.base, **changes})

    async def find_quantity(self) -> None:
        for f in self.fields:
            if f.kind == "integer":
                v0 = self.base.get(f.name, _smallest(f))
                v1 = v0 + 1 if f.maximum is None or v0 + 1 <= f.maximum else v0 - 1
                if not isinstance(v0, int) or v1 < 1 or (f.minimum is not None and v1 < f.minimum):
                    continue
                points = [(v0, await self.price({f.name: v0})), (v1, await self.price({f.name: v1}))]
                if self._proportional(points):
                    self.quantity = (f.name, "value")
                    return
        for f in self.fields:
            if f.kind == "text" and (f.max_length is None or f.max_length >= TEXT_LENGTHS[1]):
                points = [(n, await self.price({f.name: "a" * n})) for n in TEXT_LENGTHS]
                if self._proportional(points):
                    self.quantity = (f.name, "length")
                    self.base[f.name] = "a" * TEXT_LENGTHS[0]
                    return

    @staticmethod
    def _proportional(points: list[tuple[int, _Answer | None]]) -> bool:
        (x0, a0), (x1, a1) = points
        if a0 is None or a1 is None or a0.high is None or a1.high is None or a0.high == a1.high or x0 == x1:
            return False
        step, rest = divmod(a1.high - a0.high, x1 - x0)
        return rest == 0 and step > 0 and step * x0 == a0.high

    def choices(self, f: _Field) -> tuple[Any, ...]:
        if f.kind == "enum":
            return f.values
        if f.kind == "boolean":
            return (False, True)
        if f.kind == "file" and not f.required:
            return (None, PROBE_URL)
        return ()

    async def rate_fields(self) -> list[_Field]:
        found = []
        for f in self.fields:
            if self.quantity is not None and f.name == self.quantity[0]:
                continue
            prices = {await self.per_unit({f.name: v}) for v in self.choices(f)}
            if len(prices - {None}) > 1:
                found.append(f)
        return found

    async def rates(self, drivers: list[_Field], base_price: int | None) -> list[dict[str, Any]]:
        if len(drivers) == 1 and drivers[0].kind != "file":  # one field: its values of the same price together
            f, groups = drivers[0], dict[int, list[Any]]()
            for value in self.choices(drivers[0]):
                price = await self.per_unit({f.name: value})
                if price is not None and price != base_price:
                    groups.setdefault(price, []).append(value)
            return [{"when": {f.name: vs if len(vs) > 1 else vs[0]}, "usd_per_unit": usd_decimal(price)}
                    for price, vs in groups.items()]
        combos = list(itertools.islice(itertools.product(*(self.choices(f) for f in drivers)), MAX_COMBOS))
        present = [sum(1 for f, v in zip(drivers, c, strict=True) if f.kind == "file" and v is not None)
                   for c in combos]
        rates = []
        for _, combo in sorted(zip(present, combos, strict=True), key=lambda pc: pc[0]):  # null files first
            price = await self.per_unit(dict(zip((f.name for f in drivers), combo, strict=True)))
            if price is None:
                continue
            when = {f.name: v for f, v in zip(drivers, combo, strict=True) if not (f.kind == "file" and v is not None)}
            rates.append({"when": when, "usd_per_unit": usd_decimal(price)})
        return rates


async def probe_price(api: ApiClient, app_id: str, input_schema: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """The price table (``app.json``'s ``pricing`` keys) the estimate endpoint shows, and how
    many requests it took."""
    ask = _Asker(api, app_id)
    fields = _fields(input_schema)
    base = {f.name: _smallest(f) for f in fields if f.required}
    probe = _Probe(ask, fields, base)
    first = await probe.price({})
    if first is None or first.high is None:
        why = first.description if first is not None and first.description else "no price for a minimal request"
        return {"unit": "run", "confidence": "unknown", "note": f"the estimate endpoint gave {why}"}, len(ask.asked)
    await probe.find_quantity()
    base_price = await probe.per_unit({})
    drivers = await probe.rate_fields()
    rates = await probe.rates(drivers, base_price) if drivers else []
    confidence = max((a.confidence for a in probe.answers), key=_ORDER.__getitem__)
    found = _UNIT.search(first.description)
    unit = found.group(1) if found else ("character" if probe.quantity and probe.quantity[1] == "length"
                                         else "unit" if probe.quantity else "run")
    table: dict[str, Any] = {"unit": unit, "confidence": confidence}
    if confidence != "unknown" and base_price is not None:
        table["usd_per_unit"] = usd_decimal(base_price)
    if probe.quantity is not None:
        table["quantity_field"] = probe.quantity[0]
        if probe.quantity[1] == "length":
            table["quantity_of"] = "length"
    if rates:
        table["rates"] = rates
    if confidence == "range":
        units = probe.units(base)
        table["min"] = usd_decimal((first.low or 0) // units)
        table["max"] = usd_decimal(first.high // units)
    if first.description:
        table["note"] = first.description
    return table, len(ask.asked)
