"""What a task of an app returns and bills, read from ``app.json``'s ``emulator`` section.

No app is written in Python: each output field of the app's output schema is made by a
*kind* (a PNG, several PNGs, an MP4, a WAV, a text, the billing metadata) with its sizes,
counts and durations read from the task's input::

    "emulator": {
      "usage": {"type": "video", "model": "kling-video-o1"},   # the usage event ("$field": an input value)
      "seed_field": "prompt",                                  # the input text the media's colours come from
      "outputs": {                                             # output field -> how it is made
        "image":  {"kind": "image", "pixels": PIXELS},
        "images": {"kind": "images", "count": MEASURE, "pixels": PIXELS},
        "video":  {"kind": "video", "seconds": MEASURE, "pixels": PIXELS},
        "audio":  {"kind": "audio", "seconds": MEASURE, "sample_rate": 16000},
        "description": {"kind": "text", "text": "a template with $prompt"},
        "output_meta": {"kind": "meta", "type": "video", "key": "seconds", "value": "quantity" | "seconds"}
      }
    }
    MEASURE: {"field": name, "of": "value" | "length", "per": divisor, "default": n, "min": n, "max": n}
    PIXELS:  {"by": [input fields], "table": nested by them (default: the app's output_pixels),
              "default": [width, height]}

Fields the input leaves out take their schema defaults. A file is answered as a URI
string or as an object (``uri``, ``content_type``, ``filename``, and ``width``/``height``
for images), as the output schema allows. Without ``outputs``, the output schema's
properties are made generically (a file: a PNG; a list of files: one PNG; a string: text).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from string import Template
from typing import Any, Literal

from ..core.schemas import AppSpec

__all__ = [
    "FileForm", "Measure", "OutputField", "OutputPlan", "PixelTable", "input_value", "plan_outputs", "resolve_ref",
]

Kind = Literal["image", "images", "video", "audio", "text", "meta"]
FileForm = Literal["uri", "object"]
KINDS: tuple[Kind, ...] = ("image", "images", "video", "audio", "text", "meta")
FILE_KINDS = frozenset({"image", "images", "video", "audio"})
DEFAULT_SIZE = (1024, 1024)


def input_value(value: Mapping[str, Any], defaults: Mapping[str, Any], name: str) -> Any:
    """The input's value of ``name``, or the schema's default when the input leaves it out."""
    return value.get(name, defaults.get(name))


@dataclass(frozen=True, slots=True)
class Measure:
    """A number read from the input: a field's value or length, divided, defaulted, clamped."""

    field: str | None = None
    of: Literal["value", "length"] = "value"
    per: float = 1.0
    default: float = 1.0
    minimum: float | None = None
    maximum: float | None = None

    def read(self, value: Mapping[str, Any], defaults: Mapping[str, Any]) -> float:
        raw = input_value(value, defaults, self.field) if self.field else None
        if self.of == "length":
            number = len(raw) / self.per if isinstance(raw, str) else None
        else:
            number = raw / self.per if isinstance(raw, int | float) and not isinstance(raw, bool) else None
        result = self.default if number is None else number
        if self.minimum is not None:
            result = max(self.minimum, result)
        if self.maximum is not None:
            result = min(self.maximum, result)
        return result


@dataclass(frozen=True, slots=True)
class PixelTable:
    """A nominal (width, height) looked up by input values."""

    by: tuple[str, ...]
    table: Mapping[str, Any]
    default: tuple[int, int] = DEFAULT_SIZE

    def size(self, value: Mapping[str, Any], defaults: Mapping[str, Any]) -> tuple[int, int]:
        node: Any = self.table
        for name in self.by:
            node = node.get(str(input_value(value, defaults, name))) if isinstance(node, Mapping) else None
        if isinstance(node, list | tuple) and len(node) == 2 and all(isinstance(n, int) for n in node):
            return int(node[0]), int(node[1])
        return self.default


@dataclass(frozen=True, slots=True)
class OutputField:
    name: str
    kind: Kind
    form: FileForm = "uri"
    measure: Measure | None = None
    """``count`` of images, ``seconds`` of video or audio."""
    pixels: PixelTable | None = None
    text: str = ""
    """A text's template (``$field`` takes the input's value)."""
    meta_type: str = ""
    key: str = "count"
    """A meta entry: ``{"type": meta_type, key: the value, "extra": {}}``."""
    value: Literal["quantity", "seconds"] = "quantity"
    sample_rate: int = 16_000


@dataclass(frozen=True, slots=True)
class OutputPlan:
    usage_type: str
    usage_model: str
    seed_field: str
    fields: tuple[OutputField, ...]
    defaults: Mapping[str, Any]

    def render(self, template: str, value: Mapping[str, Any]) -> str:
        """``template`` with ``$field`` replaced by the input's values (defaults filled in)."""
        words = {k: "" if v is None else str(v) for k, v in {**self.defaults, **value}.items()}
        return Template(template).safe_substitute(words)

    def usage_event(self, value: Mapping[str, Any], quantity: int, unit: str) -> dict[str, Any]:
        model = self.render(self.usage_model, value)
        return {"type": self.usage_type, "model": model, "quantity": quantity, "unit": unit}


def resolve_ref(node: Any, root: Mapping[str, Any]) -> Any:
    """Follow a local ``$ref`` (``#/$defs/x``) once or more."""
    for _ in range(8):
        ref = node.get("$ref") if isinstance(node, Mapping) else None
        if not isinstance(ref, str) or not ref.startswith("#/"):
            return node
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, Mapping) else None
        node = target
    return node


def _form(node: Any, root: Mapping[str, Any]) -> FileForm:
    """``object`` when the schema lets a file be an object, else ``uri`` (a string)."""
    node = resolve_ref(node, root)
    if not isinstance(node, Mapping):
        return "uri"
    branches = [resolve_ref(b, root) for b in (*node.get("anyOf", ()), *node.get("oneOf", ()))] or [node]
    return "object" if any(isinstance(b, Mapping) and b.get("type") == "object" for b in branches) else "uri"


def _measure(raw: Any, where: str) -> Measure:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where} must be an object like {{'field': 'duration'}}")  # noqa: TRY004 - malformed data
    of = raw.get("of", "value")
    if of not in ("value", "length"):
        raise ValueError(f"{where}.of must be 'value' or 'length', got {of!r}")
    per = float(raw.get("per", 1))
    if per <= 0:
        raise ValueError(f"{where}.per must be > 0")
    bounds = {k: float(raw[k]) if raw.get(k) is not None else None for k in ("min", "max")}
    field = raw.get("field")
    return Measure(str(field) if field else None, of, per, float(raw.get("default", 1)), bounds["min"], bounds["max"])


def _pixels(raw: Any, spec: AppSpec, where: str) -> PixelTable:
    raw = raw if isinstance(raw, Mapping) else {}
    by = tuple(str(b) for b in raw.get("by", ()))
    table = raw.get("table", spec.output_pixels)
    default = raw.get("default", DEFAULT_SIZE)
    if not isinstance(table, Mapping) or not (isinstance(default, list | tuple) and len(default) == 2):
        raise ValueError(f"{where}: table must be an object and default [width, height]")
    return PixelTable(by, table, (int(default[0]), int(default[1])))


def _field(name: str, raw: Mapping[str, Any], spec: AppSpec, node: Any) -> OutputField:
    where = f"emulator.outputs.{name}"
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{where}.kind must be one of {', '.join(KINDS)}, got {kind!r}")
    form = _form(node.get("items") if kind == "images" and isinstance(node, Mapping) else node, spec.output_schema)
    measure = None
    if kind in ("images", "video", "audio"):
        key = "count" if kind == "images" else "seconds"
        measure = _measure(raw.get(key, {}), f"{where}.{key}")
    pixels = _pixels(raw.get("pixels"), spec, f"{where}.pixels") if kind in ("image", "images", "video") else None
    value = raw.get("value", "quantity")
    if value not in ("quantity", "seconds"):
        raise ValueError(f"{where}.value must be 'quantity' or 'seconds', got {value!r}")
    return OutputField(name, kind, form, measure, pixels, str(raw.get("text", "")), str(raw.get("type", "")),
                       str(raw.get("key", "count")), value, int(raw.get("sample_rate", 16_000)))


def _generic(name: str, node: Any, spec: AppSpec) -> dict[str, Any] | None:
    """How to make an output property when the app has no ``emulator.outputs``."""
    node = resolve_ref(node, spec.output_schema)
    if name == "output_meta":
        return {"kind": "meta", "type": spec.pricing.unit}
    if not isinstance(node, Mapping):
        return None
    if node.get("format") == "file" or _form(node, spec.output_schema) == "object":
        return {"kind": "image"}
    items = resolve_ref(node.get("items"), spec.output_schema)
    if node.get("type") == "array" and isinstance(items, Mapping) and items.get("format") == "file":
        return {"kind": "images"}
    return {"kind": "text", "text": f"emulated {name}"} if node.get("type") == "string" else None


def plan_outputs(spec: AppSpec) -> OutputPlan:
    """The output plan of an app; ``ValueError`` when its ``emulator`` section is malformed."""
    section = spec.emulator
    properties = spec.output_schema.get("properties", {})
    outputs = section.get("outputs")
    if outputs is None:
        outputs = {k: made for k, v in properties.items() if (made := _generic(k, v, spec)) is not None}
    if not isinstance(outputs, Mapping):
        raise ValueError("emulator.outputs must be an object of output fields")  # noqa: TRY004 - malformed data
    unknown = sorted(set(outputs) - set(properties))
    if unknown:
        raise ValueError(f"emulator.outputs names fields the output schema lacks: {', '.join(unknown)}")
    fields = tuple(_field(str(k), v, spec, properties[k]) for k, v in outputs.items() if isinstance(v, Mapping))
    usage = section.get("usage") or {}
    defaults = spec.pricing.defaults
    return OutputPlan(
        usage_type=str(usage.get("type", spec.pricing.unit)),
        usage_model=str(usage.get("model", spec.name)),
        seed_field=str(section.get("seed_field", "prompt")),
        fields=fields,
        defaults=defaults,
    )
