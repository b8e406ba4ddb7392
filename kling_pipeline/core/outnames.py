"""Where a plan's images go: the output directory, and the names ``output.filename`` renders.

A rendered name must stay inside the output directory: not empty, not absolute, no
``..``, no backslash or NUL, not a directory; and no subdirectory it names may lead
outside through a symlink.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from .errors import Diagnostic, Position
from .recipe import Recipe

__all__ = ["escaping_names", "name_problem", "output_dir", "plain_name"]


def output_dir(recipe: Recipe, out: str | os.PathLike[str] | None) -> Path:
    """``--out``, else ``output.dir`` relative to the file that wrote it (``bases/../out`` is
    ``out``), else ``out/<name>`` next to the recipe."""
    if out is not None:
        return Path(out)
    spec = recipe.output
    if spec.dir is not None and spec.dir_pos is not None:
        return Path(os.path.normpath(Path(os.path.dirname(spec.dir_pos.file)) / spec.dir))
    return Path(os.path.dirname(recipe.file)) / "out" / recipe.name


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_+=-][A-Za-z0-9_+=~.-]*")  # one path part, no leading '.' or '~'
plain_name = _PLAIN_NAME.fullmatch  # the usual case (job ids): nothing to check, nothing to normalise


def name_problem(name: str) -> str | None:
    """Why a rendered output name is refused, or None when it is fine."""
    if plain_name(name):
        return None
    if not name:
        return "renders to an empty file name"
    if name.startswith(("/", "~")) or (name[1:2] == ":" and name[0].isalpha()):  # C:... is a Windows drive
        return f"renders to an absolute path {name!r}; file names must stay inside the output directory"
    if ".." in name.split("/"):
        return f"renders to {name!r}, which leaves the output directory ('..')"
    if "\x00" in name or "\\" in name:
        return f"renders to {name!r}, which holds a character not allowed in file names"
    if name.endswith("/") or name.rsplit("/", maxsplit=1)[-1] in (".", ""):
        return f"renders to {name!r}, which names a directory, not a file"
    return None


def escaping_names(out_dir: Path, names: Iterable[str], pos: Position | None) -> list[Diagnostic]:
    """Names that would leave the output directory through a symlink (``pos``: the filename template)."""
    root = Path(os.path.realpath(out_dir))  # realpath: a symlink loop gives a path, not an error
    out = []
    parents = set()
    for n in names:
        if "/" in n:
            parents.add(os.path.dirname(n))
        elif "" not in parents:
            parents.add("")  # the directory itself
    for parent in sorted(parents):
        target = Path(os.path.realpath(out_dir / parent))
        if target != root and root not in target.parents:
            out.append(Diagnostic(pos, f"output.filename puts files in {parent!r}, which resolves to {target} "
                                       f"outside the output directory {root} (a symlink?)"))
    return out
