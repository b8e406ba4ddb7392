"""Jobs: one request to the API, with a readable id and a content key.

The id is built from the combination's values (and the repeat index) so people
can read it in file names and logs. The content key is a hash of what would be
paid for: app ref + rendered input (local files by their content hash) + repeat
index. Same key, same job: the manifest matches jobs across runs by key.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .matrix import Combination

__all__ = ["MADE_FIELDS", "Job", "canonical_json", "content_key", "job_id", "make_job", "slug"]

_UNSAFE = re.compile(r"[^A-Za-z0-9.+=_]+")
_SLUG_MAX = 40


@functools.lru_cache(maxsize=65536)
def slug(text: str) -> str:
    """A file-name-safe rendering of a label: ``16:9`` -> ``16_9``."""
    cleaned = _UNSAFE.sub("_", text).strip("._")
    return cleaned[:_SLUG_MAX].rstrip("._") or "_"


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 text: the form hashed into content keys."""
    return _CANONICAL.encode(value)


def content_key(app: str, request: Mapping[str, Any], repeat_index: int) -> str:
    """sha256 hex of what is paid for. ``request`` has local files as ``sha256:<hex>``."""
    # the canonical JSON of {"app": app, "input": request, "repeat_index": repeat_index}, assembled
    # from its parts (the keys are in sorted order already)
    blob = f'{{"app":{_CANONICAL.encode(app)},"input":{_CANONICAL.encode(request)},"repeat_index":{int(repeat_index)}}}'
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def job_id(combination: Combination, repeat_index: int, repeat: int) -> str:
    parts = [p.part or slug(p.label) for p in combination.picks] or ["job"]
    if repeat > 1:
        parts.append(f"r{repeat_index}")
    return "-".join(parts)


@dataclass(frozen=True, slots=True)
class Job:
    """One planned request. The rendered input is re-derived on demand (see ``Plan.render``)."""

    id: str
    key: str
    combination: Combination
    repeat_index: int
    units: int  # billed units (images) for this request
    cost: int  # microcents
    output_name: str  # file name of image 0, relative to the output directory (extension may follow)
    show_repeat: bool = False

    @property
    def short_key(self) -> str:
        return self.key[:10]

    @property
    def label(self) -> str:
        """``[subject=mug, style=noir]``, with ``repeat=1`` when the recipe repeats."""
        combo = self.combination
        items = [f"{k}={p.label}" for k, p in zip(combo.keys, combo.picks, strict=True)]
        if self.show_repeat:
            items.append(f"repeat={self.repeat_index}")
        return "[" + ", ".join(items) + "]"


MADE_FIELDS = ("id", "key", "combination", "repeat_index", "units", "cost", "output_name", "show_repeat")
_set_id, _set_key, _set_combination, _set_repeat_index, _set_units, _set_cost, _set_output_name, _set_show_repeat = (
    vars(Job)[name].__set__ for name in MADE_FIELDS)
_new = object.__new__


def make_job(id: str, key: str, combination: Combination, repeat_index: int, units: int, cost: int,
             output_name: str, show_repeat: bool) -> Job:
    """``Job(...)``, the same object, made by setting its slots directly: a plan makes
    100,000s of jobs, and the dataclass's frozen ``__init__`` takes twice as long.
    (``MADE_FIELDS`` must stay the dataclass's fields: a test checks it.)"""
    job = _new(Job)
    _set_id(job, id)
    _set_key(job, key)
    _set_combination(job, combination)
    _set_repeat_index(job, repeat_index)
    _set_units(job, units)
    _set_cost(job, cost)
    _set_output_name(job, output_name)
    _set_show_repeat(job, show_repeat)
    return job
