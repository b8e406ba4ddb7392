"""YAML with source positions: text in, a tree of located nodes out.

Only the safe YAML subset is accepted: standard scalar, sequence and mapping
tags. Anything else (``!!python/object``, custom ``!tags``, binary) is refused
with the position of the offending node. Mapping keys are always the key's
source text (so ``on:`` stays the string ``"on"``); duplicate keys are errors;
``<<`` merge keys work as in YAML 1.1. Timestamps stay strings.

Nodes are built straight from the parser's events, and values written again through
an alias (``*name``) are counted, so neither a large file nor a "billion laughs" file
can fill the memory.

Pure: takes text and the name to show for it, never opens files.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import Diagnostic, Position, RecipeError

__all__ = ["MAX_DIGITS", "Node", "merge_nodes", "parse_yaml", "to_plain"]

_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_TAG}{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")}
_MAP_TAGS = {f"{_TAG}map", f"{_TAG}omap"}
_SEQ_TAGS = {f"{_TAG}seq"}
_MERGE_TAG = f"{_TAG}merge"
_NUMBER_TAGS = {f"{_TAG}int", f"{_TAG}float"}
MAX_DIGITS = 4_000  # the longest number a recipe may hold (Python prints at most 4,300 digits)
_MAX_INT_BITS = int(MAX_DIGITS * math.log2(10))
_MAX_DEPTH = 64
# Aliases can make a few lines expand to billions of values ("billion laughs"): cap the
# values built again through an alias (a large file without aliases is bounded by its size).
_MAX_ALIASED = 100_000


@dataclass(eq=False, slots=True)
class Node:
    """A YAML value with the place it was written.

    ``value`` is a scalar (str, int, float, bool, None), a ``dict[str, Node]``
    or a ``list[Node]``. ``key_pos`` is where the mapping key naming this node
    is, when there is one.
    """

    value: Any
    pos: Position
    key_pos: Position | None = None
    tag: str = field(default="")

    @property
    def is_mapping(self) -> bool:
        return isinstance(self.value, dict)

    @property
    def is_sequence(self) -> bool:
        return isinstance(self.value, list)

    def items(self) -> Iterator[tuple[str, Node]]:
        assert isinstance(self.value, dict)
        return iter(self.value.items())


def _pos(file: str, mark: Any) -> Position:
    return Position(file, mark.line + 1, mark.column + 1)


_PLAIN_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
_BAD_TAG = ("is not allowed: recipes are loaded safely and take only plain strings, numbers, booleans, null, "
            "lists and mappings")


class _Builder:
    """Builds located nodes straight from the parser's events (no intermediate node
    graph: a few megabytes of YAML stay a few hundred megabytes of memory at most)."""

    def __init__(self, file: str, events: Iterator[yaml.Event]) -> None:
        self.file = file
        self.events = events
        self.problems: list[Diagnostic] = []
        self._constructor = yaml.constructor.SafeConstructor()
        self._resolver: Any = yaml.resolver.Resolver()
        self._plain_tags: dict[str, str] = {}
        self._anchors: dict[str, Node | None] = {}  # None while the anchored value is being built
        self._aliased = 0

    def fail(self, pos: Position, message: str) -> Node:
        self.problems.append(Diagnostic(pos, message))
        return Node(None, pos)

    def _skip(self, event: yaml.Event) -> None:
        """Consume the rest of a collection whose start is ``event``."""
        if isinstance(event, yaml.CollectionStartEvent):
            open_ = 1
            while open_:
                current = next(self.events)
                open_ += isinstance(current, yaml.CollectionStartEvent) - isinstance(current, yaml.CollectionEndEvent)

    def build(self, event: yaml.Event, depth: int = 0) -> Node:
        if isinstance(event, yaml.AliasEvent):
            return self._alias(event, depth)
        pos = _pos(self.file, event.start_mark)
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self._anchors[anchor] = None
        tag = getattr(event, "tag", None)
        tag = tag if tag != "!" else None
        if depth > _MAX_DEPTH:
            self._skip(event)
            node = self.fail(pos, f"nesting deeper than {_MAX_DEPTH} levels")
        elif isinstance(event, yaml.ScalarEvent):
            node = self._scalar(event, tag, pos)
        elif tag is not None and tag not in (_SEQ_TAGS if isinstance(event, yaml.SequenceStartEvent) else _MAP_TAGS):
            self._skip(event)
            node = self.fail(pos, f"YAML tag {tag.replace(_TAG, '!!')} {_BAD_TAG}")
        elif isinstance(event, yaml.SequenceStartEvent):
            items = []
            while not isinstance(item := next(self.events), yaml.SequenceEndEvent):
                items.append(self.build(item, depth + 1))
            node = Node(items, pos, tag="seq")
        else:
            node = self._mapping(pos, depth)
        if anchor is not None:
            self._anchors[anchor] = node
        return node

    def _alias(self, event: yaml.AliasEvent, depth: int) -> Node:
        pos = _pos(self.file, event.start_mark)
        if event.anchor not in self._anchors:
            return self.fail(pos, f"the alias *{event.anchor} names no anchor (&{event.anchor}) written before it")
        target = self._anchors[event.anchor]
        if target is None:
            return self.fail(pos, f"the alias *{event.anchor} is inside the value it names")
        return self._copy(target, depth)

    def _copy(self, node: Node, depth: int) -> Node:
        """A value again, through an alias: counted, so that aliases of aliases ("billion
        laughs") cannot make a few lines into billions of values."""
        self._aliased += 1
        if self._aliased > _MAX_ALIASED:
            if self._aliased == _MAX_ALIASED + 1:
                self.fail(node.pos, f"aliases (*name) expand to more than {_MAX_ALIASED:,} values; "
                                    "a recipe should be much smaller")
            return Node(None, node.pos)
        if depth > _MAX_DEPTH:
            return self.fail(node.pos, f"nesting deeper than {_MAX_DEPTH} levels")
        value = node.value
        if isinstance(value, dict):
            value = {k: self._copy(child, depth + 1) for k, child in value.items()}
            for key, child in value.items():
                child.key_pos = node.value[key].key_pos
        elif isinstance(value, list):
            value = [self._copy(child, depth + 1) for child in value]
        return Node(value, node.pos, node.key_pos, node.tag)

    def _tag_of_plain(self, value: str) -> str:
        tag = self._plain_tags.get(value)
        if tag is None:
            tag = self._resolver.resolve(yaml.ScalarNode, value, (True, False))
            if len(self._plain_tags) < 65_536:
                self._plain_tags[value] = tag
        return tag

    def _scalar(self, event: yaml.ScalarEvent, tag: str | None, pos: Position) -> Node:
        text = event.value
        plain = bool(event.implicit[0]) and tag is None
        if tag is None:
            tag = self._tag_of_plain(text) if plain else f"{_TAG}str"
        if tag in (f"{_TAG}str", f"{_TAG}timestamp"):
            return Node(text, pos, tag="str")
        if tag not in _SCALAR_TAGS:
            return self.fail(pos, f"YAML tag {tag.replace(_TAG, '!!')} {_BAD_TAG}")
        if not event.style and tag in _NUMBER_TAGS and ":" in text:  # plain, not quoted: 1:1 is base 60
            return self.fail(pos, _sexagesimal(text))
        value: Any
        try:
            if tag == f"{_TAG}int" and _PLAIN_INT.fullmatch(text):
                value = int(text)
            else:
                value = self._constructor.construct_object(yaml.ScalarNode(tag, text, style=event.style))
        except yaml.YAMLError as exc:
            return self.fail(pos, f"invalid value: {exc}")
        except ValueError:  # Python reads at most 4,300 digits
            value = None
        if tag == f"{_TAG}int" and (value is None or abs(value).bit_length() > _MAX_INT_BITS):
            return self.fail(pos, f"a number of {len(text):,} characters is too large (at most "
                                  f"{MAX_DIGITS:,} digits); quote it if it is text")
        if isinstance(value, float) and math.isnan(value):
            return self.fail(pos, "NaN is not allowed")
        return Node(value, pos, tag="str" if isinstance(value, str) else "scalar")

    def _mapping(self, pos: Position, depth: int) -> Node:
        out: dict[str, Node] = {}
        merged: dict[str, Node] = {}
        while not isinstance(key_event := next(self.events), yaml.MappingEndEvent):
            key_pos = _pos(self.file, key_event.start_mark)
            if not isinstance(key_event, yaml.ScalarEvent):
                self.build(key_event, depth + 1)
                self.build(next(self.events), depth + 1)
                self.fail(key_pos, "mapping keys must be plain strings")
                continue
            key = str(key_event.value)
            explicit = key_event.tag not in (None, "!")
            if (key_event.tag if explicit else key_event.implicit[0] and self._tag_of_plain(key)) == _MERGE_TAG:
                self._merge_into(merged, key_pos, self.build(next(self.events), depth + 1))
                continue
            child = self.build(next(self.events), depth + 1)
            if key in out:
                first = out[key].key_pos
                where = f" (first at line {first.line})" if first else ""
                self.problems.append(Diagnostic(key_pos, f"duplicate key {key!r}{where}"))
                continue
            child.key_pos = key_pos
            out[key] = child
        for key, child in merged.items():
            out.setdefault(key, child)
        return Node(out, pos, tag="map")

    def _merge_into(self, merged: dict[str, Node], key_pos: Position, value: Node) -> None:
        for source in value.value if value.is_sequence else [value]:
            if not source.is_mapping:
                self.fail(key_pos, "'<<' merges only mappings")
                return
            for key, child in source.items():
                merged.setdefault(key, child)


def _sexagesimal(text: str) -> str:
    """The message for ``1:1`` written unquoted: YAML 1.1 reads it as a base-60 number."""
    whole, _, fraction = text.replace("_", "").partition(".")
    sign = -1 if whole.startswith("-") else 1
    number = 0
    for part in whole.lstrip("+-").split(":"):
        number = number * 60 + int(part or 0)
    shown = f"{sign * (number + float('0.' + fraction)):g}" if fraction else str(sign * number)
    return (f"{text} is read as the number {shown} (YAML 1.1 reads N:M as a base-60 number); "
            f"write \"{text}\" in quotes for the text")


def parse_yaml(text: str, file: str) -> Node:
    """Parse one YAML document into located nodes, or raise ``RecipeError``.

    An empty document is an error (a recipe needs content).
    """
    events = yaml.parse(text, Loader=_Loader)
    builder = _Builder(file, events)
    start = Position(file, 1, 1)
    try:
        next(events)  # the stream starts
        first = next(events)
        if isinstance(first, yaml.StreamEndEvent):
            raise RecipeError([Diagnostic(start, "the file is empty")])
        root_event = next(events)
        if (isinstance(root_event, yaml.ScalarEvent) and root_event.tag is None and root_event.implicit[0]
                and not root_event.value):
            raise RecipeError([Diagnostic(start, "the file is empty")])  # ("---" alone too)
        tree = builder.build(root_event)
        next(events)  # the document ends
        if isinstance(another := next(events), yaml.DocumentStartEvent):
            begun = _pos(file, first.start_mark)
            raise RecipeError([Diagnostic(_pos(file, another.start_mark), "YAML syntax error: expected a single "
                                          f"document in the stream (started at line {begun.line}, column "
                                          f"{begun.col}): but found another document")])
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        position = _pos(file, mark) if mark is not None else None
        problem = exc.problem or "invalid YAML"
        if exc.context:
            started = exc.context_mark
            where = f" (started at line {started.line + 1}, column {started.column + 1})" if started else ""
            problem = f"{exc.context}{where}: {problem}"
        raise RecipeError([Diagnostic(position, f"YAML syntax error: {problem}")]) from None
    except yaml.YAMLError as exc:
        raise RecipeError([Diagnostic(start, f"YAML error: {exc}")]) from None
    if builder.problems:
        raise RecipeError(sorted(builder.problems, key=lambda d: d.position or Position("", 0, 0)))
    return tree


def to_plain(node: Node) -> Any:
    """Drop positions: plain dicts, lists and scalars."""
    if isinstance(node.value, dict):
        return {k: to_plain(v) for k, v in node.value.items()}
    if isinstance(node.value, list):
        return [to_plain(v) for v in node.value]
    return node.value


def merge_nodes(base: Node, over: Node) -> Node:
    """Deep merge: mappings merge key by key, ``over`` wins; anything else is replaced."""
    if not (base.is_mapping and over.is_mapping):
        return over
    merged = dict(base.value)
    for key, child in over.items():
        merged[key] = merge_nodes(merged[key], child) if key in merged else child
    return Node(merged, over.pos, key_pos=over.key_pos, tag=over.tag)
