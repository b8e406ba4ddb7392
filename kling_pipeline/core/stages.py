"""Pipeline recipes: named ``stages``, each a recipe of its own, joined by ``needs``.

A recipe with a ``stages`` mapping is a pipeline. Its top level holds what the whole
pipeline shares — ``version``, ``name``, ``description``, ``app`` (a default), ``vars``
(merged under each stage's own), ``price``, ``budget``, ``concurrency``, ``output.dir``
and ``webhook`` — and each stage holds what a one-stage recipe holds besides: its own
``app``, ``vars``, ``matrix``, ``input``, ``repeat``, ``output.filename`` and ``price``,
plus two keys of its own:

* ``needs: draft`` — the stage takes each output of the stage ``draft``: every job of
  ``draft`` is a value of an implicit axis named ``draft``, crossed with the stage's own
  matrix. Its templates read ``draft.image`` (an output file: the whole value of a
  file field), ``draft.input.prompt`` (what the upstream job sent), ``draft.job_id`` and
  ``draft.<axis>`` (the upstream combination, all the way up the chain).
* ``where: {subject: [mug, lamp]}`` — only upstream jobs whose combination has one of
  these values (an axis anywhere up the chain).

Each stage is checked as a recipe is (``check_recipe`` on the top level merged with
the stage), and the references between stages here: an unknown stage, a cycle, one
upstream at most, names that would clash. What a reference reads from the upstream app
(its output fields, their kinds) is checked by the planner, which has the apps' schemas.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .checker import RESERVED_NAMES, Checker, kind
from .errors import Diagnostic, Position
from .fileaxes import FileLister, list_files
from .recipe import Recipe, check_recipe, value_label
from .sweep import DEFAULT_MAX_JOBS
from .yamlsrc import Node, merge_nodes, to_plain

__all__ = ["MAX_STAGES", "Pipeline", "Stage", "Where", "check_pipeline", "is_pipeline", "lineage_axes"]

MAX_STAGES = 32
SHARED_KEYS = ("version", "name", "description", "app", "vars", "price", "budget", "concurrency", "output",
               "webhook")
PIPELINE_KEYS = (*SHARED_KEYS, "extends", "stages")
STAGE_KEYS = ("description", "app", "vars", "matrix", "input", "repeat", "output", "price", "needs", "where")
PER_STAGE = ("matrix", "input", "repeat")  # written in each stage of a pipeline, never at its top
# what ``draft.<name>`` means besides the upstream's output fields: an upstream axis of the same name
# is read as draft.axes.<name>
RESERVED = ("input", "job_id", "key", "axes", "name", "stage")
_STAGE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class Where:
    """One ``where`` entry: the upstream jobs whose ``axis`` took one of ``labels``."""

    axis: str
    labels: frozenset[str]
    pos: Position  # the axis key
    value_pos: Mapping[str, Position]  # each label, where written


@dataclass(frozen=True, slots=True)
class Stage:
    name: str
    pos: Position  # the stage's key under 'stages'
    recipe: Recipe  # the top level merged with the stage, checked as a recipe
    needs: str | None = None
    needs_pos: Position | None = None
    where: tuple[Where, ...] = ()


@dataclass(frozen=True, slots=True)
class Pipeline:
    """The stages of a pipeline recipe, upstream before downstream."""

    file: str
    stages: tuple[Stage, ...]

    @property
    def first(self) -> Recipe:
        """The first stage's recipe: what the stages share (name, budget, output dir, sources) reads from it."""
        return self.stages[0].recipe

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def chain(self, name: str) -> list[Stage]:
        """``name``'s stage and its upstream stages, nearest first."""
        out = [self.stage(name)]
        while out[-1].needs is not None:
            out.append(self.stage(out[-1].needs))
        return out


def is_pipeline(tree: Node) -> bool:
    return tree.is_mapping and "stages" in tree.value


def lineage_axes(pipeline: Pipeline, name: str) -> list[str]:
    """The matrix keys of ``name``'s stage and of every stage up its chain, nearest first."""
    out: list[str] = []
    for stage in pipeline.chain(name):
        m = stage.recipe.matrix
        for key in (*m.axis_names, *(k for e in m.include for k in e.values)):
            if key not in out:
                out.append(key)
    return out


def _stage_tree(top: Mapping[str, Node], node: Node) -> Node:
    """The recipe tree of one stage: the shared keys, merged under the stage's own."""
    shared = Node({k: v for k, v in top.items() if k in SHARED_KEYS}, node.pos, key_pos=node.key_pos)
    own = Node({k: v for k, v in node.items() if k not in ("needs", "where")}, node.pos, key_pos=node.key_pos)
    return merge_nodes(shared, own)


def _named(top: Mapping[str, Node], child: Node, name: str) -> list[tuple[str, Position | None]]:
    """Where a stage (``child``, under the shared ``top``) declares ``name``: a var (its own or a
    shared one), a matrix axis or an ``include`` key; each as ``(what, the key's position)``."""
    found: list[tuple[str, Position | None]] = []
    for vars_node, what in ((child.value.get("vars"), "var"), (top.get("vars"), "var")):
        if vars_node is not None and vars_node.is_mapping and name in vars_node.value:
            found.append((what, vars_node.value[name].key_pos))
            break  # the stage's own var hides the shared one
    matrix = child.value.get("matrix")
    if matrix is not None and matrix.is_mapping:
        if name in matrix.value:
            found.append(("axis", matrix.value[name].key_pos))
        include = matrix.value.get("include")
        for entry in include.value if include is not None and include.is_sequence else ():
            if entry.is_mapping and name in entry.value:
                found.append(("include key", entry.value[name].key_pos))
    return found


def _needs(check: Checker, node: Node | None, names: list[str], me: str) -> tuple[str | None, Position | None]:
    if node is None:
        return None, None
    value: Any = node.value
    if isinstance(value, list):
        if len(value) != 1:
            check.error(node.pos, "needs names one stage (a stage takes the outputs of one upstream stage; "
                                  "a stage without needs starts a chain of its own)")
            return None, None
        node = value[0]
        value = node.value
    if not isinstance(value, str):
        check.error(node.pos, f"needs must name a stage, got {kind(node)}")
        return None, None
    if value == me:
        check.error(node.pos, f"stage {me!r} cannot need itself")
        return None, None
    if value not in names:
        hint = difflib.get_close_matches(value, names, n=1)
        more = f"; did you mean {hint[0]!r}?" if hint else f" (stages: {', '.join(names)})"
        check.error(node.pos, f"needs: there is no stage {value!r}{more}")
        return None, None
    return value, node.pos


def _where(check: Checker, node: Node | None) -> tuple[Where, ...]:
    if node is None:
        return ()
    if not node.is_mapping or not node.value:
        check.error(node.pos, "where must be a mapping of an upstream axis to the value (or list of values) "
                              "to take, e.g. 'where: {subject: [mug, lamp]}'")
        return ()
    out = []
    for axis, child in node.items():
        items = child.value if child.is_sequence else [child]
        if not items:
            check.error(child.pos, f"where.{axis}: an empty list takes nothing; name the values to take")
            continue
        labels: dict[str, Position] = {}
        for item in items:
            if item.is_mapping or item.is_sequence:
                check.error(item.pos, f"where.{axis}: name a value by its label (a string or number), "
                                      f"got {kind(item)}")
                continue
            labels[value_label(to_plain(item))] = item.pos
        if labels:
            out.append(Where(axis, frozenset(labels), child.key_pos or child.pos, labels))
    return tuple(out)


def _order(check: Checker, stages: dict[str, tuple[Node, str | None, Position | None]]) -> list[str]:
    """Upstream before downstream (else file order). A cycle is reported at the ``needs`` that
    closes it, and that ``needs`` dropped (so the stages still read as chains). A stage that needs
    one that could not be read (its problem is reported) comes in file order."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        node, needs, pos = stages[name]
        if needs is not None and needs not in stages:
            pass
        elif needs is not None and state.get(needs) == "open":
            cycle = [*path[path.index(needs):], name, needs] if needs in path else [name, needs]
            check.error(pos, f"stages need each other in a cycle: {' needs '.join(cycle)}; remove one of these "
                             "needs (a chain starts at a stage without needs)")
            stages[name] = (node, None, None)
        elif needs is not None and state.get(needs) != "done":
            visit(needs, [*path, name])
        state[name] = "done"
        order.append(name)

    for name in stages:
        if name not in state:
            visit(name, [])
    return order


def check_pipeline(tree: Node, file: str, sources: tuple[str, ...] = (), *, max_jobs: int = DEFAULT_MAX_JOBS,
                   lister: FileLister = list_files) -> tuple[Pipeline | None, list[Diagnostic]]:
    """The pipeline as far as it could be read (None when no stage could be), and every problem found."""
    check = Checker()
    top: dict[str, Node] = tree.value
    # (a per-stage key at the top is reported below, once, with where to write it)
    check.keys(Node({k: v for k, v in top.items() if k not in PER_STAGE}, tree.pos), PIPELINE_KEYS, "the pipeline")
    for key in PER_STAGE:
        if key in top:
            check.error(top[key].key_pos or top[key].pos,
                        f"'{key}' belongs to a stage in a recipe with 'stages': write it under each stage")
    out = top.get("output")
    if out is not None and out.is_mapping and "filename" in out.value:
        check.error(out.value["filename"].key_pos, "output.filename belongs to a stage in a recipe with 'stages': "
                                                   "write it under each stage's 'output' (output.dir stays here: "
                                                   "each stage writes into <dir>/<stage>/)")
    node = top["stages"]
    if not node.is_mapping or not node.value:
        check.error(node.pos, "stages must be a mapping of stage names to stages, e.g. 'stages: {draft: {...}}'")
        return None, check.problems
    if len(node.value) > MAX_STAGES:
        check.error(node.pos, f"a pipeline has at most {MAX_STAGES} stages, this one has {len(node.value)}")
        return None, check.problems
    names = list(node.value)
    read: dict[str, tuple[Node, str | None, Position | None]] = {}
    for name, child in node.items():
        where = child.key_pos or child.pos
        if not _STAGE_NAME.match(name):
            check.error(where, f"stage name {name!r} must be a name a template can use: letters, digits and '_', "
                               "not starting with a digit")
            continue
        if name in RESERVED_NAMES:
            check.error(where, f"stage name {name!r} is reserved (templates read {name!r} as something else); "
                               "choose another name")
            continue
        if not child.is_mapping:
            check.error(child.pos, f"stage {name!r} must be a mapping (app, matrix, input, needs...), "
                                   f"got {kind(child)}")
            continue
        check.keys(child, STAGE_KEYS, f"stage {name!r}")
        out = child.value.get("output")
        if out is not None and out.is_mapping and "dir" in out.value:
            check.error(out.value["dir"].key_pos, "output.dir is the pipeline's (each stage writes into "
                                                  "<dir>/<stage>/): set it at the top level")
        needs, needs_pos = _needs(check, child.value.get("needs"), names, name)
        read[name] = (child, needs, needs_pos)
    order = _order(check, read)
    stages: list[Stage] = []
    chained: set[str] = set()  # the stages in the pipeline so far: all the way up their chain, read
    seen: set[Diagnostic] = set(check.problems)
    problems = list(check.problems)
    for name in order:
        child, needs, needs_pos = read[name]
        stage_tree = _stage_tree(top, child)
        recipe, found = check_recipe(stage_tree, file, sources, max_jobs=max_jobs, lister=lister)
        sub = Checker()
        taken = _where(sub, child.value.get("where"))
        if taken and needs is None:
            sub.error(child.value["where"].key_pos, "where narrows what a stage takes from the stage it needs: "
                                                    "add 'needs: <stage>'")
        if needs is not None:
            for what, pos in _named(top, child, needs):
                sub.error(pos, f"{what} {needs!r} has the name of the stage this one needs (whose outputs are read "
                               f"as {needs}.<output>): rename the {what}")
        for d in (*found, *sub.problems):
            if d not in seen:
                seen.add(d)
                problems.append(d)
        if needs is not None and needs not in chained:
            continue  # it needs a stage that could not be read: checked, not chained
        chained.add(name)
        stages.append(Stage(name, child.key_pos or child.pos, recipe, needs, needs_pos, taken))
    if not stages:
        return None, problems
    pipeline = Pipeline(file, tuple(stages))
    for stage in stages:
        if stage.needs is None:
            continue
        known = lineage_axes(pipeline, stage.needs)
        for w in stage.where:
            if w.axis not in known:
                hint = difflib.get_close_matches(w.axis, known, n=1)
                more = f"; did you mean {hint[0]!r}?" if hint else f" (axes: {', '.join(known) or 'none'})"
                problems.append(Diagnostic(w.pos, f"where: {stage.needs!r} and the stages it needs have no axis "
                                                  f"{w.axis!r}{more}"))
    return pipeline, problems
