"""A recipe given as Python data (a mapping, as ``yaml.safe_load`` would give it) turned
into YAML text, so that it is read exactly like a file: the same checks, the same messages.

Mappings with string keys, lists and tuples, strings, numbers, booleans, ``None`` and paths
(``os.PathLike``, written as strings) are data; anything else is reported with where it is.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import yaml

from .errors import Diagnostic, RecipeError

__all__ = ["data_to_text"]


def _plain(value: Any, where: str, problems: list[str]) -> Any:
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                problems.append(f"{where or 'the recipe'}: key {key!r} is a {type(key).__name__}; keys are strings")
                continue
            out[key] = _plain(item, f"{where}.{key}" if where else key, problems)
        return out
    if isinstance(value, list | tuple):
        return [_plain(item, f"{where}[{i}]", problems) for i, item in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        problems.append(f"{where}: {value!r} is not a finite number")
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    problems.append(f"{where}: a value of type {type(value).__name__} is not recipe data (use strings, numbers, "
                    "booleans, None, lists and mappings)")
    return None


def data_to_text(data: Mapping[str, Any], shown: str) -> str:
    """``data`` as YAML text; raises ``RecipeError`` naming every value that is not data."""
    problems: list[str] = []
    plain = _plain(data, "", problems)
    if problems:
        raise RecipeError([Diagnostic(None, f"{shown}: {p}") for p in problems])
    return yaml.safe_dump(plain, sort_keys=False, allow_unicode=True, width=1 << 16)
