"""Reading recipe files: the edge where recipe text comes from disk.

``extends: base.yaml`` (or a list) names recipes whose keys this one inherits:
a deep merge of mappings, the child winning, lists and scalars replaced whole.
Paths are relative to the file that names them; cycles are errors.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import Diagnostic, Position, RecipeError, UsageError
from .localfiles import ReadProblem, read_regular
from .recipe import Recipe, build_recipe, check_recipe
from .recipedata import data_to_text
from .stages import Pipeline, check_pipeline, is_pipeline
from .sweep import DEFAULT_MAX_JOBS
from .yamlsrc import Node, merge_nodes, parse_yaml

__all__ = ["RecipeSource", "display_path", "load_any_partial", "load_recipe", "load_recipe_partial", "merge_nodes",
           "read_tree"]

RecipeSource = str | os.PathLike[str] | Mapping[str, Any]
"""A recipe file's path; YAML text (a string holding a line break); or the recipe as a mapping."""

MAX_RECIPE_BYTES = 5 * 1024 * 1024
MAX_EXTENDS_DEPTH = 32  # files extending each other in a chain
MAX_RECIPE_FILES = 100  # files read for one recipe (a file extended twice is read twice)


def display_path(path: str | os.PathLike[str]) -> str:
    """How a path is shown in messages: relative to the working directory when inside it."""
    p = Path(path)
    try:
        return os.path.normpath(Path(os.path.realpath(p)).relative_to(os.path.realpath(Path.cwd())))
    except (OSError, ValueError):  # outside the working directory (or it is gone); a NUL in the name
        return os.path.normpath(p.absolute()) if "\x00" not in str(p) else repr(str(p))


def _read_text(path: Path, shown: str, cause: Position | None) -> str:
    """The text of a recipe file: a regular file (not a pipe, a device or a directory),
    read with a bounded read, so that neither a FIFO nor ``/dev/zero`` can hang or fill
    the memory."""
    try:
        data = read_regular(path, MAX_RECIPE_BYTES)
    except ReadProblem as exc:
        message = {
            "missing": "no such recipe file",
            "directory": "is a directory, not a recipe file",
            "special": "is not a regular file (a pipe or a device?); a recipe is a file",
            "loop": "cannot read: too many levels of symbolic links (a symlink loop?)",
            "nul": "a file name cannot hold a NUL character",
            "too_large": f"recipe file is larger than 5 MB ({exc.size:,} bytes)",
        }.get(exc.kind, f"cannot read: {exc.detail or exc.kind}")
        raise RecipeError([Diagnostic(cause, f"{shown}: {message}")]) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(
            [Diagnostic(cause, f"{shown}: not UTF-8 text (byte {exc.start}); save the recipe as UTF-8")]
        ) from None


def _real(path: Path) -> Path:
    """Where ``path`` leads (for finding cycles); a broken or looping link is left to the read."""
    try:
        return Path(os.path.realpath(path))
    except (OSError, ValueError):
        return path.absolute()


def read_tree(path: Path, shown: str, chain: tuple[Path, ...] = (), cause: Position | None = None,
              sources: list[str] | None = None) -> Node:
    """Read one recipe file and everything it extends, merged into one tree."""
    real = _real(path)
    if real in chain:
        cycle = " -> ".join(display_path(p) for p in (*chain, real))
        raise RecipeError([Diagnostic(cause, f"'extends' cycle: {cycle}")])
    if len(chain) >= MAX_EXTENDS_DEPTH:
        raise RecipeError([Diagnostic(cause, f"'extends' goes more than {MAX_EXTENDS_DEPTH} files deep")])
    if sources is not None and len(sources) >= MAX_RECIPE_FILES:
        raise RecipeError([Diagnostic(cause, f"'extends' reads more than {MAX_RECIPE_FILES} files for one recipe")])
    tree = parse_yaml(_read_text(path, shown, cause), shown)
    if sources is not None:
        sources.append(shown)
    return _extend(tree, path, shown, (*chain, real), sources)


def _extend(tree: Node, path: Path, shown: str, chain: tuple[Path, ...], sources: list[str] | None) -> Node:
    """``tree`` (read from ``path``, or text standing for it) merged over what it ``extends``."""
    if not tree.is_mapping or "extends" not in tree.value:
        return tree
    ext = tree.value["extends"]
    refs: list[Node] = ext.value if ext.is_sequence else [ext]
    if not refs:
        raise RecipeError([Diagnostic(ext.pos, "extends is an empty list: name a recipe file, or remove the key")])
    problems = [Diagnostic(r.pos, "extends must name a recipe file (a string, or a list of strings)")
                for r in refs if not isinstance(r.value, str) or not r.value.strip()]
    problems += [Diagnostic(r.pos, "extends: a file name cannot hold a NUL character")
                 for r in refs if isinstance(r.value, str) and "\x00" in r.value]
    if problems:
        raise RecipeError(problems)
    merged: Node | None = None
    for ref in refs:
        parent_path = path.parent / ref.value
        parent_shown = os.path.normpath(os.path.join(os.path.dirname(shown), ref.value))
        parent = read_tree(parent_path, parent_shown, chain, ref.pos, sources)
        if not parent.is_mapping:
            raise RecipeError([Diagnostic(parent.pos, "a recipe named by 'extends' must be a mapping")])
        merged = parent if merged is None else merge_nodes(merged, parent)
    own = Node({k: v for k, v in tree.items() if k != "extends"}, tree.pos, tag=tree.tag)
    assert merged is not None  # refs is not empty
    return merge_nodes(merged, own)


def load_recipe(source: RecipeSource, *, base_dir: str | os.PathLike[str] | None = None,
                max_jobs: int = DEFAULT_MAX_JOBS) -> Recipe:
    """Load, merge and shape-check a recipe: a file's path, YAML text (a string holding a
    line break) or a mapping (listing the files of its file axes, at most ``max_jobs`` each).
    Relative paths in text or a mapping (``extends``, ``output.dir``, reference images) are
    relative to ``base_dir`` (default: the working directory), and such a recipe needs a
    ``name``. Raises ``RecipeError``."""
    recipe, problems = load_recipe_partial(source, base_dir=base_dir, max_jobs=max_jobs)
    if problems:
        raise RecipeError(problems)
    return recipe


def load_recipe_partial(path: RecipeSource, *, base_dir: str | os.PathLike[str] | None = None,
                        max_jobs: int = DEFAULT_MAX_JOBS) -> tuple[Recipe, list[Diagnostic]]:
    """The recipe as far as it could be read, with its shape problems (for reporting
    every problem at once). Unreadable or unparsable files still raise ``RecipeError``,
    and so does a pipeline (``load_any_partial`` reads those)."""
    got, problems = load_any_partial(path, base_dir=base_dir, max_jobs=max_jobs)
    if isinstance(got, Pipeline):
        raise RecipeError([Diagnostic(Position(got.file, 1, 1), "this recipe is a pipeline (it has 'stages'): "
                                                                "plan it with plan_file()")])
    if got is None:
        raise RecipeError(problems)
    return got, problems


def _text_tree(text: str, shown: str, sources: list[str]) -> Node:
    tree = parse_yaml(text, shown)
    sources.append(shown)
    if tree.is_mapping and "name" not in tree.value:
        raise RecipeError([Diagnostic(tree.pos, "missing key 'name': a recipe given as text or a mapping has no "
                                                "file name to take its name from (the name names its output "
                                                "directory)")])
    return _extend(tree, Path(shown), shown, (), sources)


def load_any_partial(path: RecipeSource, *, base_dir: str | os.PathLike[str] | None = None,
                     max_jobs: int = DEFAULT_MAX_JOBS) -> tuple[Recipe | Pipeline | None, list[Diagnostic]]:
    """A recipe or a pipeline (a recipe with ``stages``) as far as it could be read, with its
    shape problems; None for a pipeline none of whose stages could be read. ``path`` may also
    be YAML text or a mapping (see ``load_recipe``)."""
    sources: list[str] = []
    if isinstance(path, Mapping) or (isinstance(path, str) and "\n" in path):
        kind = "<dict>" if isinstance(path, Mapping) else "<text>"
        shown = kind if base_dir is None else os.path.normpath(os.path.join(display_path(base_dir), kind))
        tree = _text_tree(data_to_text(path, kind) if isinstance(path, Mapping) else path, shown, sources)
    elif isinstance(path, str | os.PathLike):
        shown = display_path(path)
        tree = read_tree(Path(path), shown, sources=sources)
    else:
        raise UsageError(f"a recipe is a file's path, YAML text or a mapping, not a {type(path).__name__}")
    if not tree.is_mapping:
        return build_recipe(tree, shown, tuple(sources)), []  # raises: a recipe must be a mapping
    if is_pipeline(tree):
        return check_pipeline(tree, shown, tuple(sources), max_jobs=max_jobs)
    return check_recipe(tree, shown, tuple(sources), max_jobs=max_jobs)
