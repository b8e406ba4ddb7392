"""A pipeline's jobs as a forest: which job each one was made from, in compact arrays.

Each manifest job (a *node*) is added as the manifest streams past (``add``), keeping only
numbers: its stage, its first manifest line, a 64-bit hash of its key and of its upstream
job's key (from its intent's ``files.<field>.upstream``), and with a plan the planned job it
may stand for (``planmatch``). The keys themselves, and everything else about a job, stay on
disk. ``resolve`` then turns upstream hashes into node numbers (an upstream link counts only
when it points into the stage the node's stage needs, so a chain never loops) and, with a
plan, places the nodes on its jobs. Planned jobs that no node stands for are *members* of
the chains too (numbered after the nodes): they show as "not run".

``chain_key`` spells a member's place in the chains view: its root's segment, then each
descendant's down to it, so that sorting the keys lists each chain from its first job, depth
first, children in stage then plan (or manifest) order.

Memory: 34 bytes a node while the manifest streams, 14 after ``resolve`` (and the planned jobs'
index, ``planmatch``); for a moment, while an index of hashes is sorted, about 50 bytes an
entry. Nothing kept per node is a Python object.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

from .planmatch import HashIndex, PlanMatcher, hash64
from .source import ManifestJob

__all__ = ["MAX_STAGES", "SEGMENT", "Lineage", "StageInfo", "depth_of"]

MAX_STAGES = 64  # stages shown; from a manifest with more, the jobs of the others are listed apart
SEGMENT = 16  # hex digits a chain key spends on each member: its stage, its order
_HEX = "%08x"
_MAX = 0xFFFFFFFF


@dataclass(slots=True)
class StageInfo:
    name: str
    needs: str | None
    app: str | None = None
    first: int = 0  # the manifest line that first names it (a manifest's stages are ordered by it)


class Lineage:
    """The nodes of a pipeline's manifest and, with a plan (``matcher``), its planned jobs."""

    def __init__(self, matcher: PlanMatcher | None) -> None:
        self.matcher = matcher
        self.stages: list[StageInfo] = []
        self._number: dict[str, int] = {}
        if matcher is not None:
            for sp in matcher.plan.stages:
                self._number[sp.name] = len(self.stages)
                self.stages.append(StageInfo(sp.name, sp.needs, str(sp.plan.recipe.app)))
        self.stage = array("h")  # per node: its stage's number, -1 for none shown
        self.line = array("I")
        self._keys = HashIndex()
        self._parent_hash = array("Q")
        self._candidate = array("i")
        self.parent = array("i")  # per node, after ``resolve``: its upstream node, -1 for none
        self.slot = array("i")  # per node, after ``resolve``: the planned job it stands for, -1 for none
        self.plan_node = array("i")  # per planned job, after ``resolve``: the node standing for it, -1 for none

    @property
    def nodes(self) -> int:
        return len(self.stage)

    @property
    def members(self) -> int:
        return self.nodes + len(self.plan_node)

    def add(self, mj: ManifestJob) -> int:
        """A manifest job: its node number."""
        n = self.nodes
        self.stage.append(self._stage_number(mj))
        self.line.append(min(mj.line, _MAX))
        self._keys.add(hash64(mj.key), n)
        self._parent_hash.append(hash64(mj.parent) if mj.parent is not None else 0)
        if self.matcher is not None:
            self._candidate.append(self.matcher.candidate(mj))
        return n

    def _stage_number(self, mj: ManifestJob) -> int:
        if mj.stage is None:
            return -1
        found = self._number.get(mj.stage)
        if found is not None:
            info = self.stages[found]
            if self.matcher is None and mj.line < info.first:
                info.first, info.needs, info.app = mj.line, mj.parent_stage, mj.app
            return found
        if self.matcher is not None or len(self.stages) >= MAX_STAGES:
            return -1
        self._number[mj.stage] = len(self.stages)
        self.stages.append(StageInfo(mj.stage, mj.parent_stage, mj.app, mj.line))
        return len(self.stages) - 1

    def resolve(self) -> None:
        """After the last ``add``: order a manifest's stages (upstream first), link each node to its
        upstream node, and with a plan, place the nodes on its jobs."""
        if self.matcher is None:
            self._order_stages()
        self._keys.freeze()
        needs = [self._number.get(s.needs, -1) if s.needs is not None else -1 for s in self.stages]
        self.parent = array("i", [-1]) * self.nodes
        for n in range(self.nodes):
            h, stage = self._parent_hash[n], self.stage[n]
            if h and stage >= 0 and needs[stage] >= 0:
                up = self._keys.get(h)
                if up >= 0 and self.stage[up] == needs[stage]:
                    self.parent[n] = up
        self._parent_hash, self._keys = array("Q"), HashIndex()
        if self.matcher is not None:
            self._place(self.matcher)
        self._candidate = array("i")

    def _order_stages(self) -> None:
        """A manifest's stages by depth (a stage whose upstream is unknown, or in a loop, is a first
        stage), then by first appearance; the nodes renumbered to match."""
        by_name = {s.name: s for s in self.stages}
        for s in self.stages:
            if s.needs not in by_name:
                s.needs = None
        depth: dict[str, int] = {}
        for s in self.stages:
            path: list[str] = []
            at: StageInfo | None = s
            while at is not None and at.name not in depth:
                if at.name in path:  # a loop: the last stage of the path becomes a first stage
                    by_name[path[-1]].needs = None
                    break
                path.append(at.name)
                at = by_name[at.needs] if at.needs is not None else None
            for name in reversed(path):
                up = by_name[name].needs
                depth[name] = depth[up] + 1 if up is not None else 0
        order = sorted(range(len(self.stages)), key=lambda i: (depth[self.stages[i].name], self.stages[i].first))
        renumber = array("h", [0]) * len(order)
        for new, old in enumerate(order):
            renumber[old] = new
        self.stages = [self.stages[i] for i in order]
        self._number = {s.name: i for i, s in enumerate(self.stages)}
        for n in range(self.nodes):
            if self.stage[n] >= 0:
                self.stage[n] = renumber[self.stage[n]]

    def _place(self, matcher: PlanMatcher) -> None:
        """Each node on the planned job it is a candidate for, when its upstream node stands for that
        job's upstream (stage by stage, upstream first). Of two nodes for one planned job, the one
        the manifest names last stands for it."""
        self.slot = array("i", [-1]) * self.nodes
        self.plan_node = array("i", [-1]) * len(matcher.stage_of)
        for n in self._by_stage():
            i = self._candidate[n]
            if i < 0:
                continue
            up = matcher.parent[i]
            if up >= 0 and (self.parent[n] < 0 or self.slot[self.parent[n]] != up):
                continue
            held = self.plan_node[i]
            if held >= 0:
                if self.line[held] > self.line[n]:
                    continue
                self.slot[held] = -1
            self.slot[n] = i
            self.plan_node[i] = n

    def _by_stage(self) -> array[int]:
        """The nodes, by their candidate's stage (a counting sort into one array)."""
        assert self.matcher is not None
        stage_of = self.matcher.stage_of
        keys = [stage_of[c] + 1 if c >= 0 else 0 for c in self._candidate]
        counts = [0] * (len(self.stages) + 1)
        for k in keys:
            counts[k] += 1
        starts, total = [], 0
        for c in counts:
            starts.append(total)
            total += c
        out = array("i", [0]) * self.nodes
        for n, k in enumerate(keys):
            out[starts[k]] = n
            starts[k] += 1
        return out

    # members: the nodes (0 .. nodes - 1), then the planned jobs no node stands for (nodes + index)

    def in_chains(self, node: int) -> bool:
        """Whether a node is shown in the chains and the stages' grids (else it is listed apart)."""
        return self.slot[node] >= 0 if self.matcher is not None else self.stage[node] >= 0

    def member_stage(self, member: int) -> int:
        if member >= self.nodes:
            assert self.matcher is not None
            return self.matcher.stage_of[member - self.nodes]
        if self.matcher is not None and self.slot[member] >= 0:
            return self.matcher.stage_of[self.slot[member]]
        return self.stage[member]

    def order(self, member: int) -> int:
        """Plan order (a node: its planned job's), else the manifest line that first names the job."""
        if member >= self.nodes:
            return member - self.nodes
        return self.slot[member] if self.matcher is not None else self.line[member]

    def up(self, member: int) -> int:
        """A member's upstream member, or -1."""
        if member < self.nodes:
            return self.parent[member]
        assert self.matcher is not None
        up = self.matcher.parent[member - self.nodes]
        if up < 0:
            return -1
        held = self.plan_node[up]
        return held if held >= 0 else self.nodes + up

    def chain_key(self, member: int) -> str:
        """``0`` (``1`` for a chain whose first job's upstream is not known), then a segment per
        member from the chain's first job down to ``member``."""
        segments: list[str] = []
        at, stage = member, -1
        for _ in range(len(self.stages) + 1):  # (upstream links go up a stage each: never more)
            stage = self.member_stage(at)
            segments.append(_HEX % stage + _HEX % min(self.order(at), _MAX))
            at = self.up(at)
            if at < 0:
                break
        orphan = self.stages[stage].needs is not None
        return ("1" if orphan else "0") + "".join(reversed(segments))


def depth_of(chain_key: str) -> int:
    """A member's depth in its chain (0 for the chain's first job)."""
    return (len(chain_key) - 1) // SEGMENT - 1
