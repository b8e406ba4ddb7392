"""Which planned job a pipeline's manifest job stands for.

A first stage's job has its planned key. A downstream job's key holds the sha256 of the
upstream file it read, which the plan cannot know, so it is matched by what the plan does
know: its stage, its combination and repeat, its app, and its request — the one the plan
renders, compared with the one its intent recorded everywhere but where an upstream output
or a local file goes (local files are compared by their sha256). Whether its upstream job is
the planned job's upstream is checked by ``lineage``. So a stage whose recipe changed after a
run shows its jobs as not run, and the jobs of the earlier recipe apart, as a one-stage
report does.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from typing import Any

from ...core.chain import find_refs
from ...core.errors import KlingError
from ...core.planning import Plan
from .source import ManifestJob

__all__ = ["HashIndex", "PlanMatcher", "hash64", "labels_hash"]

_MARK = "\x00upstream or file\x00"


def hash64(text: str) -> int:
    """A nonzero 64-bit hash of ``text`` (0 stands for "none")."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") or 1


def labels_hash(stage: str, labels: Iterable[tuple[str, str]], repeat_index: int) -> int:
    """What places a downstream job in its stage's plan: its combination and repeat."""
    return hash64(repr((stage, sorted(labels), repeat_index)))


class HashIndex:
    """64-bit hashes to numbers below 2**32: two arrays (12 bytes an entry), sorted by ``freeze``
    (for a moment, a list of one int an entry), looked up by bisection."""

    def __init__(self) -> None:
        self._keys = array("Q")
        self._values = array("I")

    def add(self, key: int, value: int) -> None:
        self._keys.append(key)
        self._values.append(value)

    def freeze(self) -> HashIndex:
        packed = sorted(k << 32 | v for k, v in zip(self._keys, self._values, strict=True))
        self._keys = array("Q", (p >> 32 for p in packed))
        self._values = array("I", (p & 0xFFFFFFFF for p in packed))
        return self

    def get(self, key: int) -> int:
        """The value of ``key`` (the least, when added twice), or -1."""
        i = bisect_left(self._keys, key)
        return self._values[i] if i < len(self._keys) and self._keys[i] == key else -1


class PlanMatcher:
    """A pipeline plan's jobs, indexed: per planned job its stage (``stage_of``) and upstream
    planned job (``parent``, -1 for a first stage's), and ``candidate`` for a manifest job."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.names = [sp.name for sp in plan.stages]
        self.needs = [sp.needs for sp in plan.stages]
        self._number = {name: i for i, name in enumerate(self.names)}
        self._apps = [str(sp.plan.recipe.app) for sp in plan.stages]
        self.stage_of = array("h")
        for s, sp in enumerate(plan.stages):  # plan.jobs holds the stages' jobs, in stage order
            self.stage_of.extend(array("h", [s]) * len(sp.plan.jobs))
        self.parent = array("i", [-1]) * len(plan.jobs)
        self._keys, self._labels = HashIndex(), HashIndex()
        for i, job in enumerate(plan.jobs):
            self._keys.add(hash64(job.key), i)
        self._keys.freeze()
        for i, job in enumerate(plan.jobs):
            s = self.stage_of[i]
            needs = self.needs[s]
            if needs is None:
                continue
            pick = job.combination.pick(needs)
            up = pick.value.get("key") if pick is not None and isinstance(pick.value, Mapping) else None
            if isinstance(up, str):
                self.parent[i] = self._keys.get(hash64(up))
            self._labels.add(labels_hash(self.names[s], job.combination.labels.items(), job.repeat_index), i)
        self._labels.freeze()

    def stage_number(self, name: str | None) -> int:
        return self._number.get(name, -1) if name is not None else -1

    def candidate(self, mj: ManifestJob) -> int:
        """The planned job ``mj`` stands for if its upstream job is that job's upstream, or -1."""
        s = self.stage_number(mj.stage)
        if s < 0 and mj.stage is not None:
            return -1
        if s < 0 or self.needs[s] is None:  # (a job with no intent has no stage: by its key alone)
            i = self._keys.get(hash64(mj.key))
            return i if i >= 0 and self.needs[self.stage_of[i]] is None and s in (-1, self.stage_of[i]) else -1
        i = self._labels.get(labels_hash(self.names[s], mj.labels, mj.repeat_index))
        if i < 0 or (mj.app is not None and mj.app != self._apps[s]):
            return -1
        return i if self._same_request(i, mj) else -1

    def _same_request(self, index: int, mj: ManifestJob) -> bool:
        if mj.request is None:
            return False
        try:
            rendered = self.plan.render(self.plan.jobs[index])
        except KlingError:  # a reference file changed since planning
            return False
        planned, sent = _copy(rendered.request), _copy(mj.request)
        for path, _, _ in find_refs(rendered.request):
            if not (_mask(planned, path) and _mask(sent, path)):
                return False
        files = mj.files or {}
        for name, local in rendered.files.items():
            got = files.get(name)
            if not isinstance(got, Mapping) or got.get("sha256") != local.sha256:
                return False
            if not (_mask(planned, (name,)) and _mask(sent, (name,))):
                return False
        return _canonical(planned) == _canonical(sent)


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _mask(obj: Any, path: tuple[str | int, ...]) -> bool:
    """Put the mark at ``path`` (False when the request has nothing there)."""
    if not path:
        return False
    *head, last = path
    for p in head:
        if not _has(obj, p):
            return False
        obj = obj[p]
    if not _has(obj, last):
        return False
    obj[last] = _MARK
    return True


def _has(obj: Any, step: str | int) -> bool:
    if isinstance(obj, dict):
        return isinstance(step, str) and step in obj
    return isinstance(obj, list) and isinstance(step, int) and 0 <= step < len(obj)
