"""What an app returns, read from its output schema: the file fields (one file or a list),
of which kind (image, video, audio, any file), and the value fields (text, numbers, JSON).

As ``validate.file_fields`` does for inputs, nothing here names an app: a field holds
files when its schema says ``format: file`` (the platform's apps do) or describes an
object with a ``uri``; its kind comes from ``contentMediaType`` when given, else from
its name (``image``, ``video``, ``audio``...). ``OutputSpec.files(output)`` then lists
the files of one task's output, in schema order, each a URI with its content type when
the output says it. Pure: a schema and an output in, descriptions out.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal

from .jsonref import follow_ref

__all__ = ["OutputField", "OutputFile", "OutputSpec", "file_uri", "suffix_for"]

Kind = Literal["image", "video", "audio", "file"]
SKIPPED = frozenset({"output_meta"})  # billing metadata, not an output
_NAME_HINTS: tuple[tuple[str, Kind], ...] = (("image", "image"), ("mask", "image"), ("thumbnail", "image"),
                                             ("video", "video"), ("audio", "audio"), ("speech", "audio"),
                                             ("voice", "audio"), ("sound", "audio"))
ACCEPT: dict[Kind, tuple[str, ...]] = {  # content types a download of each kind may have
    "image": ("image/",),
    "video": ("video/", "application/octet-stream", "binary/octet-stream"),
    "audio": ("audio/", "application/octet-stream", "binary/octet-stream"),
    "file": (),  # anything
}
DEFAULT_SUFFIX: dict[Kind, str] = {"image": ".png", "video": ".mp4", "audio": ".wav", "file": ".bin"}
_PREFERRED = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "image/gif": ".gif",
              "video/mp4": ".mp4", "video/webm": ".webm", "video/quicktime": ".mov", "audio/wav": ".wav",
              "audio/x-wav": ".wav", "audio/wave": ".wav", "audio/mpeg": ".mp3", "audio/mp4": ".m4a",
              "audio/ogg": ".ogg", "audio/flac": ".flac", "text/plain": ".txt", "application/json": ".json"}


@dataclass(frozen=True, slots=True)
class OutputField:
    name: str
    kind: Kind | None  # None: a value (text, number, JSON), not a file
    many: bool = False  # a list of files
    max_items: int | None = None  # a list's maxItems in the schema: the most files it holds, when said

    @property
    def accept(self) -> tuple[str, ...]:
        return ACCEPT[self.kind or "file"]


@dataclass(frozen=True, slots=True)
class OutputFile:
    """One file of a task's output."""

    field: OutputField
    index: int  # within its field (0 for a single file)
    uri: str
    content_type: str | None  # as the output says, when it does


def file_uri(item: Any) -> tuple[str, str | None] | None:
    """A file as an output gives it: a URI string, or an object with ``uri`` (and maybe ``content_type``)."""
    if isinstance(item, str) and item:
        return item, None
    if isinstance(item, Mapping) and isinstance(item.get("uri"), str) and item["uri"]:
        ctype = item.get("content_type")
        return item["uri"], ctype if isinstance(ctype, str) else None
    return None


def _alternatives(schema: Mapping[str, Any], root: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    options = [schema]
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key) or ():
            options.append(follow_ref(sub, root))
    return [o for o in options if o.get("type") != "null"]


def _is_file(schema: Mapping[str, Any], root: Mapping[str, Any]) -> bool:
    for option in _alternatives(schema, root):
        if option.get("format") == "file" or option.get("contentMediaType"):
            return True
        props = option.get("properties")
        if option.get("type") == "object" and isinstance(props, Mapping) and "uri" in props:
            return True
    return False


def _kind(name: str, schema: Mapping[str, Any], root: Mapping[str, Any]) -> Kind:
    for option in _alternatives(schema, root):
        media = option.get("contentMediaType")
        if isinstance(media, str):
            top = media.split("/", 1)[0]
            if top in ("image", "video", "audio"):
                return top  # type: ignore[return-value]
    lowered = name.lower()
    for hint, kind in _NAME_HINTS:
        if hint in lowered:
            return kind
    return "file"


def _field(name: str, schema: Any, root: Mapping[str, Any]) -> OutputField:
    node = follow_ref(schema, root)
    for option in _alternatives(node, root):
        if option.get("type") == "array":
            items = follow_ref(option.get("items"), root)
            if _is_file(items, root):
                most = option.get("maxItems")
                bounded = isinstance(most, int) and not isinstance(most, bool) and most >= 0
                return OutputField(name, _kind(name, items, root), many=True, max_items=most if bounded else None)
    if _is_file(node, root):
        return OutputField(name, _kind(name, node, root))
    return OutputField(name, None)


@dataclass(frozen=True, slots=True)
class OutputSpec:
    fields: tuple[OutputField, ...]

    @classmethod
    def from_schema(cls, schema: Mapping[str, Any]) -> OutputSpec:
        props = schema.get("properties")
        if not isinstance(props, Mapping):
            return cls(())
        return cls(tuple(_field(str(name), sub, schema) for name, sub in props.items() if name not in SKIPPED))

    @property
    def file_fields(self) -> tuple[OutputField, ...]:
        return tuple(f for f in self.fields if f.kind is not None)

    @property
    def value_fields(self) -> tuple[OutputField, ...]:
        return tuple(f for f in self.fields if f.kind is None)

    def files(self, output: Any) -> list[OutputFile]:
        """The files of ``output``, in schema order; a URI listed twice is one file."""
        if not isinstance(output, Mapping):
            return []
        found: list[OutputFile] = []
        seen: set[str] = set()
        for f in self.file_fields:
            value = output.get(f.name)
            items = (value if isinstance(value, list) else []) if f.many else [value]
            for index, item in enumerate(items):
                got = file_uri(item)
                if got is not None and got[0] not in seen:
                    seen.add(got[0])
                    found.append(OutputFile(f, index, got[0], got[1]))
        return found

    def values(self, output: Any) -> dict[str, Any]:
        """The value fields ``output`` has (text, numbers, JSON)."""
        if not isinstance(output, Mapping):
            return {}
        return {f.name: output[f.name] for f in self.value_fields if output.get(f.name) is not None}


def suffix_for(kind: Kind, content_type: str | None, uri: str) -> str:
    """The file extension: from the content type, else the URI's, else the kind's."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    ext = _PREFERRED.get(ctype) or (mimetypes.guess_extension(ctype) if ctype else None)
    if not ext:
        tail = PurePosixPath(uri.split("?", maxsplit=1)[0]).suffix.lower()
        ext = tail if 1 < len(tail) <= 6 and tail[1:].isalnum() else None
    return ext or DEFAULT_SUFFIX[kind]
