"""Reading recipe files: the edge where recipe text comes from disk.

``extends: base.yaml`` (or a list) names recipes whose keys this one inherits:
a deep merge of mappings, the child winning, lists and scalars replaced whole.
Paths are relative to the file that names them; cycles are errors.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import Diagnostic, Position, RecipeError
from .localfiles import ReadProblem, read_regular
from .recipe import Recipe, build_recipe, check_recipe
from .sweep import DEFAULT_MAX_JOBS
from .yamlsrc import Node, parse_yaml

__all__ = ["display_path", "load_recipe", "load_recipe_partial", "merge_nodes", "read_tree"]

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


def merge_nodes(base: Node, over: Node) -> Node:
    """Deep merge: mappings merge key by key, ``over`` wins; anything else is replaced."""
    if not (base.is_mapping and over.is_mapping):
        return over
    merged = dict(base.value)
    for key, child in over.items():
        merged[key] = merge_nodes(merged[key], child) if key in merged else child
    return Node(merged, over.pos, key_pos=over.key_pos, tag=over.tag)


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
        parent = read_tree(parent_path, parent_shown, (*chain, real), ref.pos, sources)
        if not parent.is_mapping:
            raise RecipeError([Diagnostic(parent.pos, "a recipe named by 'extends' must be a mapping")])
        merged = parent if merged is None else merge_nodes(merged, parent)
    own = Node({k: v for k, v in tree.items() if k != "extends"}, tree.pos, tag=tree.tag)
    assert merged is not None  # refs is not empty
    return merge_nodes(merged, own)


def load_recipe(path: str | os.PathLike[str], *, max_jobs: int = DEFAULT_MAX_JOBS) -> Recipe:
    """Load, merge and shape-check a recipe file (listing the files of its file axes, at
    most ``max_jobs`` each). Raises ``RecipeError``."""
    recipe, problems = load_recipe_partial(path, max_jobs=max_jobs)
    if problems:
        raise RecipeError(problems)
    return recipe


def load_recipe_partial(path: str | os.PathLike[str], *,
                        max_jobs: int = DEFAULT_MAX_JOBS) -> tuple[Recipe, list[Diagnostic]]:
    """The recipe as far as it could be read, with its shape problems (for reporting
    every problem at once). Unreadable or unparsable files still raise ``RecipeError``."""
    shown = display_path(path)
    sources: list[str] = []
    tree = read_tree(Path(path), shown, sources=sources)
    if not tree.is_mapping:
        return build_recipe(tree, shown, tuple(sources)), []  # raises: a recipe must be a mapping
    return check_recipe(tree, shown, tuple(sources), max_jobs=max_jobs)
