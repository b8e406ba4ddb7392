"""Local ``$ref``s in the apps' JSON Schemas (``#/$defs/...``), followed the one way every reader
of a schema here (validation, outputs, pipelines, schema diffs, price probes) follows them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["follow_ref"]

MAX_HOPS = 20  # a ref that leads back to itself stops here


def follow_ref(node: Any, root: Mapping[str, Any]) -> Mapping[str, Any]:
    """``node`` with its local ``$ref`` followed in ``root`` (hop after hop); the node's other keys
    are kept under the target's (a ``description`` beside a ``$ref``). Not a mapping, or a ref that
    leads nowhere: ``{}``."""
    for _ in range(MAX_HOPS):
        ref = node.get("$ref") if isinstance(node, Mapping) else None
        if not isinstance(ref, str) or not ref.startswith("#/"):
            break
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, Mapping) else None
        if not isinstance(target, Mapping):
            return {}
        node = {**{k: v for k, v in node.items() if k != "$ref"}, **target}
    return node if isinstance(node, Mapping) else {}
