"""YAML with source positions: text in, a tree of located nodes out.

Only the safe YAML subset is accepted: standard scalar, sequence and mapping
tags. Anything else (``!!python/object``, custom ``!tags``, binary) is refused
with the position of the offending node. Mapping keys are always the key's
source text (so ``on:`` stays the string ``"on"``); duplicate keys are errors;
``<<`` merge keys work as in YAML 1.1. Timestamps stay strings.

Pure: takes text and the name to show for it, never opens files.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import Diagnostic, Position, RecipeError

__all__ = ["MAX_DIGITS", "Node", "parse_yaml", "to_plain"]

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


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Diagnostic] = []
        self._constructor = yaml.constructor.SafeConstructor()
        self._built: set[int] = set()
        self._aliased = 0

    def fail(self, node: yaml.Node, message: str) -> Node:
        self.problems.append(Diagnostic(_pos(self.file, node.start_mark), message))
        return Node(None, _pos(self.file, node.start_mark))

    def build(self, node: yaml.Node, depth: int = 0) -> Node:
        if id(node) in self._built:
            self._aliased += 1
            if self._aliased > _MAX_ALIASED:
                if self._aliased == _MAX_ALIASED + 1:
                    self.fail(node, f"aliases (*name) expand to more than {_MAX_ALIASED:,} values; "
                                    "a recipe should be much smaller")
                return Node(None, _pos(self.file, node.start_mark))
        else:
            self._built.add(id(node))
        if depth > _MAX_DEPTH:
            return self.fail(node, f"nesting deeper than {_MAX_DEPTH} levels")
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node)
        if isinstance(node, yaml.SequenceNode):
            if node.tag not in _SEQ_TAGS:
                return self._bad_tag(node)
            items = [self.build(child, depth + 1) for child in node.value]
            return Node(items, _pos(self.file, node.start_mark), tag="seq")
        if isinstance(node, yaml.MappingNode):
            if node.tag not in _MAP_TAGS:
                return self._bad_tag(node)
            return self._mapping(node, depth)
        return self.fail(node, "unsupported YAML node")  # pragma: no cover - composer yields only these

    def _bad_tag(self, node: yaml.Node) -> Node:
        tag = node.tag.replace(_TAG, "!!")
        return self.fail(
            node,
            f"YAML tag {tag} is not allowed: recipes are loaded safely and take only plain "
            "strings, numbers, booleans, null, lists and mappings",
        )

    def _scalar(self, node: yaml.ScalarNode) -> Node:
        pos = _pos(self.file, node.start_mark)
        if node.tag not in _SCALAR_TAGS:
            return self._bad_tag(node)
        if node.tag == f"{_TAG}timestamp":
            return Node(node.value, pos, tag="str")
        if not node.style and node.tag in _NUMBER_TAGS and ":" in node.value:  # plain, not quoted
            return self.fail(node, _sexagesimal(node.value))
        try:
            value = self._constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            return self.fail(node, f"invalid value: {exc}")
        except ValueError:  # Python reads at most 4,300 digits
            value = None
        if node.tag == f"{_TAG}int" and (value is None or abs(value).bit_length() > _MAX_INT_BITS):
            return self.fail(node, f"a number of {len(node.value):,} characters is too large (at most "
                                   f"{MAX_DIGITS:,} digits); quote it if it is text")
        if isinstance(value, float) and math.isnan(value):
            return self.fail(node, "NaN is not allowed")
        return Node(value, pos, tag="str" if isinstance(value, str) else "scalar")

    def _mapping(self, node: yaml.MappingNode, depth: int) -> Node:
        pos = _pos(self.file, node.start_mark)
        out: dict[str, Node] = {}
        merged: dict[str, Node] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                self._merge_into(merged, key_node, value_node, depth)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.fail(key_node, "mapping keys must be plain strings")
                continue
            key = str(key_node.value)
            key_pos = _pos(self.file, key_node.start_mark)
            if key in out:
                first = out[key].key_pos
                where = f" (first at line {first.line})" if first else ""
                self.problems.append(Diagnostic(key_pos, f"duplicate key {key!r}{where}"))
                continue
            child = self.build(value_node, depth + 1)
            child.key_pos = key_pos
            out[key] = child
        for key, child in merged.items():
            out.setdefault(key, child)
        return Node(out, pos, tag="map")

    def _merge_into(
        self, merged: dict[str, Node], key_node: yaml.Node, value_node: yaml.Node, depth: int
    ) -> None:
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for source in sources:
            built = self.build(source, depth + 1)
            if not built.is_mapping:
                self.fail(key_node, "'<<' merges only mappings")
                return
            for key, child in built.items():
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
    try:
        root = yaml.compose(text, Loader=_Loader)
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
        raise RecipeError([Diagnostic(Position(file, 1, 1), f"YAML error: {exc}")]) from None
    if root is None or (isinstance(root, yaml.ScalarNode) and root.tag == f"{_TAG}null" and not root.value):
        raise RecipeError([Diagnostic(Position(file, 1, 1), "the file is empty")])  # ("---" alone too)
    builder = _Builder(file)
    tree = builder.build(root)
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
