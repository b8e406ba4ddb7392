"""Reading a located YAML tree for the recipe model: typed getters that collect every
shape problem at its position instead of stopping at the first."""

from __future__ import annotations

import difflib
import re

from .errors import Diagnostic, Position
from .money import parse_usd
from .yamlsrc import Node

__all__ = ["RESERVED_NAMES", "Checker", "kind"]

RESERVED_NAMES = ("recipe", "repeat_index", "job_id", "short_key", "image_index", "loop", "range")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Checker:
    """Collects diagnostics while reading the tree."""

    def __init__(self) -> None:
        self.problems: list[Diagnostic] = []

    def error(self, pos: Position | None, message: str) -> None:
        self.problems.append(Diagnostic(pos, message))

    def keys(self, node: Node, allowed: tuple[str, ...], where: str) -> None:
        for key, child in node.items():
            if key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1)
                suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
                known = ", ".join(allowed)
                self.error(child.key_pos, f"unknown key {key!r} in {where}{suggestion} (allowed: {known})")

    def mapping(self, node: Node | None, where: str) -> Node | None:
        if node is None:
            return None
        if not node.is_mapping:
            self.error(node.pos, f"{where} must be a mapping, got {kind(node)}")
            return None
        return node

    def integer(self, node: Node | None, where: str, minimum: int, default: int) -> int:
        if node is None:
            return default
        v = node.value
        if isinstance(v, bool) or not isinstance(v, int):
            self.error(node.pos, f"{where} must be an integer, got {kind(node)}")
            return default
        if v < minimum:
            self.error(node.pos, f"{where} must be at least {minimum}, got {v}")
            return default
        return v

    def string(self, node: Node | None, where: str) -> str | None:
        if node is None:
            return None
        if not isinstance(node.value, str):
            self.error(node.pos, f"{where} must be a string, got {kind(node)}")
            return None
        return node.value

    def usd(self, node: Node | None, where: str) -> int | None:
        if node is None:
            return None
        if isinstance(node.value, bool) or not isinstance(node.value, int | float | str):
            self.error(node.pos, f"{where} must be an amount in USD, got {kind(node)}")
            return None
        try:
            return parse_usd(node.value)
        except ValueError as exc:
            self.error(node.pos, f"{where}: {exc}")
            return None

    def identifier(self, name: str, pos: Position | None, what: str) -> bool:
        if not _IDENT.match(name):
            self.error(pos, f"{what} {name!r} must be a name made of letters, digits and '_' "
                            "(it is used as a template variable)")
            return False
        if name in RESERVED_NAMES:
            self.error(pos, f"{what} {name!r} is reserved; choose another name")
            return False
        return True


def kind(node: Node) -> str:
    """What a node holds, as a message says it (``a mapping``, ``an integer``...)."""
    v = node.value
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    if v is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(type(v), "a value")
