"""File axes: a matrix axis written as a set of files, ``ref: {files: "refs/*.png"}``.

The glob is relative to the file that writes it (the recipe, or a base), as a reference
image is. ``*``, ``?`` and ``[...]`` match within one name; ``**`` as a whole part of
the path matches any number of folders, none included. A name that starts with ``.``
is matched only by a part of the pattern that starts with ``.``; ``**`` goes neither
into hidden folders nor through symlinked ones (no loops). Folders are never values;
anything else is (a pipe or a broken link is then refused by the reference-image
checks, at the glob).

Each file becomes a value of the axis, in the order of the labels:

* its **value** is its path as the recipe would write it (``refs/teal-square.png``), so
  ``image: "{{ ref }}"`` names it and the reference-image checks read it;
* its **label** is its path below the pattern's fixed folders (``teal-square.png``):
  unique within the axis, shown in the plan and used by ``--only``;
* its **part of job ids** is the label itself when that is at most 40 letters, digits,
  ``.``, ``_``, ``-``, ``+`` and ``=`` (not starting with ``.``, ``-``, ``+`` or ``=``);
  otherwise the label made safe (``jobs.slug``), cut to 33 characters, then ``~`` and six
  hex digits of the label's SHA-256. A file's part depends on its own name only: adding
  a file never changes another file's ids, and two files do not share one.

A job's content key depends on the file's bytes, not its name (``build`` hashes local
files into it): a renamed file is the same job, a new file only adds its own jobs.

Listing is bounded: past ``limit`` files (the job limit, ``--max-jobs``) or ``MAX_NAMES``
names looked at, it stops with an error at the glob. This module reads folders; the
recipe model (``recipe``) takes its lister as an argument.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from .checker import Checker
from .errors import Diagnostic
from .jobs import slug
from .matrix import Axis, AxisValue, MatrixSpec
from .yamlsrc import Node

__all__ = ["MAX_NAMES", "FileLister", "FileMatch", "GlobProblem", "file_axis", "id_part", "list_files",
           "looks_like_file_axis", "own_outputs"]

MAX_NAMES = 2_000_000  # names (files and folders) one glob may look at
_MAGIC = re.compile(r"[*?[]")
_PLAIN_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+=-]{0,39}")
_HASHED_CUT = 33  # 33 characters, "~" and six hex digits: 40, as any part of a job id


class GlobProblem(Exception):
    """A glob cannot be listed, or lists too much; the message says why."""


@dataclass(frozen=True, slots=True)
class FileMatch:
    value: str  # the path as the recipe would write it
    label: str  # the path below the pattern's fixed folders


FileLister = Callable[[str, str, int], list[FileMatch]]  # (file writing the glob, glob, limit) -> sorted matches


def id_part(label: str) -> str:
    """A file's part of job ids: its label when that is plain, else safe, cut and hashed (see the module docs)."""
    if _PLAIN_PART.fullmatch(label):
        return label
    digest = hashlib.sha256(label.encode("utf-8", "surrogatepass")).hexdigest()[:6]
    return f"{slug(label)[:_HASHED_CUT]}~{digest}"


def _split(pattern: str) -> tuple[bool, list[str], list[str]]:
    """(absolute, the fixed folders, the parts to match) of a glob; raises ``GlobProblem``."""
    if not pattern.strip():
        raise GlobProblem("is empty (write a glob such as 'refs/*.png')")
    if "\x00" in pattern:
        raise GlobProblem("cannot hold a NUL character")
    if pattern.endswith("/"):
        raise GlobProblem(f"{pattern!r} ends in '/': a folder is not a file (write '{pattern}*' for the files in it)")
    parts: list[str] = []
    for part in pattern.split("/"):
        if part in ("", ".") or (part == "**" and parts[-1:] == ["**"]):
            continue  # 'a//b', './a', '**/**'
        parts.append(part)
    magic = next((i for i, p in enumerate(parts) if _MAGIC.search(p)), len(parts) - 1)
    return pattern.startswith("/"), parts[:magic], parts[magic:]


def _shown(path: str) -> str:
    return os.path.normpath(path)


class _Walk:
    """The files under ``root`` that ``rest`` matches, as paths below ``root`` (parts)."""

    def __init__(self, root: str, rest: list[str], limit: int) -> None:
        self.root, self.rest, self.limit = root, rest, limit
        self.looked = 0
        self.found: set[tuple[str, ...]] = set()

    def entries(self, folder: str) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise GlobProblem(f"cannot read the folder {_shown(folder)}: {(exc.strerror or str(exc)).lower()}") \
                from None
        self.looked += len(entries)
        if self.looked > MAX_NAMES:
            raise GlobProblem(f"looks at more than {MAX_NAMES:,} files and folders; narrow it")
        return entries

    def match(self, rel: tuple[str, ...]) -> None:
        name = "/".join(rel)
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise GlobProblem(f"matches a file whose name is not UTF-8 text ({name!r}); rename it") from None
        self.found.add(rel)
        if len(self.found) > self.limit:
            raise GlobProblem(f"matches more than {self.limit:,} files, the limit on jobs; narrow it, or raise the "
                              "limit with --max-jobs N")

    def run(self) -> set[tuple[str, ...]]:
        stack: list[tuple[str, int, tuple[str, ...]]] = [(self.root, 0, ())]
        while stack:
            folder, i, rel = stack.pop()
            part, last = self.rest[i], i == len(self.rest) - 1
            if part == "**":
                if not last:
                    stack.append((folder, i + 1, rel))  # no folder at all
                for entry in self.entries(folder):
                    if entry.name.startswith("."):
                        continue
                    if _is_dir(entry, follow=False):
                        stack.append((entry.path, i, (*rel, entry.name)))
                    elif last and not _is_dir(entry, follow=True):
                        self.match((*rel, entry.name))
            elif not _MAGIC.search(part):
                path = os.path.join(folder, part)
                if last and os.path.lexists(path) and not os.path.isdir(path):
                    self.match((*rel, part))
                elif not last and os.path.isdir(path):
                    stack.append((path, i + 1, (*rel, part)))
            else:
                for entry in self.entries(folder):
                    if (entry.name.startswith(".") and not part.startswith(".")) or not fnmatchcase(entry.name, part):
                        continue
                    folder_entry = _is_dir(entry, follow=True)
                    if last and not folder_entry:
                        self.match((*rel, entry.name))
                    elif not last and folder_entry:
                        stack.append((entry.path, i + 1, (*rel, entry.name)))
        return self.found


def _is_dir(entry: os.DirEntry[str], follow: bool) -> bool:
    try:
        return entry.is_dir(follow_symlinks=follow)
    except OSError:
        return False


def list_files(origin_file: str, pattern: str, limit: int) -> list[FileMatch]:
    """The files a glob written in ``origin_file`` matches, sorted by label. Raises
    ``GlobProblem`` (also when it matches nothing)."""
    absolute, fixed, rest = _split(pattern)
    base = "/" if absolute else (os.path.dirname(origin_file) or ".")
    root = os.path.join(base, *fixed)
    found = _Walk(root, rest, limit).run()
    if not found:
        if not os.path.isdir(root):
            raise GlobProblem(f"no file matches {pattern!r}: there is no folder {_shown(root)}")
        raise GlobProblem(f"no file matches {pattern!r} (in {_shown(root)})")
    head = ("/" if absolute else "") + "".join(f"{p}/" for p in fixed)
    labels = sorted("/".join(rel) for rel in found)
    return [FileMatch(head + label, label) for label in labels]


def looks_like_file_axis(node: Node) -> bool:
    """``{files: "..."}``: what a file axis is written as (a value of include or exclude cannot be one)."""
    return node.is_mapping and list(node.value) == ["files"] and isinstance(node.value["files"].value, str)


def file_axis(check: Checker, name: str, node: Node, lister: FileLister, limit: int) -> Axis | None:
    """The axis ``name: {files: GLOB}``, its files listed; None (and an error) when it has none."""
    glob = node.value.get("files")
    if glob is None:
        typo = next((k for k in node.value if difflib.get_close_matches(k, ("files",), cutoff=0.75)), None)
        if typo is not None:
            check.error(node.value[typo].key_pos, f"unknown key {typo!r} in matrix axis {name!r}; did you mean "
                                                  "'files'?")
        else:
            check.error(node.pos, f"matrix axis {name!r} must be a list of values, or {{files: GLOB}} for a set of "
                                  "files, got a mapping")
        return None
    check.keys(node, ("files",), f"matrix axis {name!r}")
    where = f"matrix.{name}.files"
    pattern = check.string(glob, where)
    if pattern is None:
        return None
    try:
        found = lister(glob.pos.file, pattern, limit)
    except GlobProblem as exc:
        check.error(glob.pos, f"{where}: {exc}")
        return None
    values = tuple(AxisValue(m.value, glob.pos, m.label, id_part(m.label)) for m in found)
    return Axis(name, values, node.key_pos or node.pos, files=pattern)


def own_outputs(spec: MatrixSpec, out_dir: Path) -> list[Diagnostic]:
    """A file axis holding a file of the sweep's own output directory: the sweep would take
    its images as inputs, and each run would pay for new jobs made from the last one's."""
    out = os.path.realpath(out_dir)
    problems = []
    for axis in spec.axes:
        if axis.files is None:
            continue
        real: dict[str, str] = {}
        for v in axis.values:
            path = os.path.join(os.path.dirname(v.pos.file), v.value)
            folder = os.path.dirname(path) or "."
            where = real.get(folder) or real.setdefault(folder, os.path.realpath(folder))
            if where == out or where.startswith(out.rstrip(os.sep) + os.sep):
                problems.append(Diagnostic(v.pos, f"matrix.{axis.name}.files: {_shown(path)} is in the output "
                                                  f"directory {out_dir}: the sweep would take its own images as "
                                                  "inputs (new jobs on every run); narrow the glob"))
                break
    return problems
