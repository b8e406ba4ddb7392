"""Shell completion for bash, zsh and fish, by argcomplete.

``kling-pipeline completion SHELL`` prints the script that hooks the shell up (argcomplete's
own, for that shell). On each Tab the shell runs ``kling-pipeline`` with ``_ARGCOMPLETE`` set;
``main`` then hands the parser to ``complete`` before parsing anything, and argcomplete
answers from the parser itself — commands, flags and their choices — plus the completers
here: recipe files (``*.yaml``) and output directories, profile names from the config file,
and for ``--only`` the matrix keys of the recipe already on the command line (``style=``),
then their values (``style=watercolor``); ``report --rows/--cols`` complete axis names.
A completer never fails loudly: a recipe that does not load completes nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

import argcomplete.io
from argcomplete.completers import DirectoriesCompleter, FilesCompleter
from argcomplete.finders import CompletionFinder
from argcomplete.shell_integration import shellcode

from ..config.profiles import load_config
from ..core.errors import KlingError
from ..core.loading import load_recipe
from ..core.recipe import Recipe

__all__ = ["SHELLS", "add_completion_parser", "attach_completers", "complete", "script"]

SHELLS = ("bash", "zsh", "fish")

Completer = Callable[..., list[str]]


def _recipe_of(parsed_args: argparse.Namespace) -> Recipe | None:
    path = getattr(parsed_args, "recipe", None) or getattr(parsed_args, "target", None)
    if not isinstance(path, str) or not os.path.isfile(path):
        return None
    try:
        return load_recipe(path)
    except (KlingError, OSError, RecursionError):
        return None


def matrix_labels(recipe: Recipe) -> dict[str, list[str]]:
    """Every matrix key (axes, then keys added by ``include``) and its value labels, in order."""
    out: dict[str, list[str]] = {axis.name: [v.label for v in axis.values] for axis in recipe.matrix.axes}
    for entry in recipe.matrix.include:
        for key, label in entry.labels.items():
            labels = out.setdefault(key, [])
            if label not in labels:
                labels.append(label)
    return out


def only_completer(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    """``--only``: ``AXIS=`` for each matrix key, then ``AXIS=VALUE`` for each of its values."""
    recipe = _recipe_of(parsed_args)
    if recipe is None:
        return []
    labels = matrix_labels(recipe)
    axis, sep, _value = prefix.partition("=")
    if not sep:
        return [f"{name}=" for name in labels if name.startswith(prefix)]
    return [f"{axis}={label}" for label in labels.get(axis, []) if f"{axis}={label}".startswith(prefix)]


def axis_completer(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    recipe = _recipe_of(parsed_args)
    return [] if recipe is None else [n for n in matrix_labels(recipe) if n.startswith(prefix)]


def profile_completer(prefix: str, **_: Any) -> list[str]:
    try:
        names = list(load_config(os.environ).profiles)
    except (KlingError, OSError):
        return []
    return [n for n in names if n.startswith(prefix)]


RECIPES = FilesCompleter(allowednames=("yaml", "yml"), directories=True)
DIRECTORIES = DirectoriesCompleter()

# argument dest -> completer, wherever the argument appears
COMPLETERS: dict[str, Any] = {
    "recipe": RECIPES, "recipes": RECIPES, "target": RECIPES, "only": only_completer, "profile": profile_completer,
    "out": DIRECTORIES, "out_dir": DIRECTORIES, "rows": axis_completer, "cols": axis_completer,
}


def attach_completers(parser: argparse.ArgumentParser) -> None:
    """Give each argument of every command its completer (by its ``dest``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                attach_completers(sub)
        elif action.dest in COMPLETERS and not (action.dest == "rows" and action.type is int):  # plan --rows N
            action.completer = COMPLETERS[action.dest]  # type: ignore[attr-defined]


class _Finder(CompletionFinder):
    """argcomplete's finder with its debug output (written only under ``_ARC_DEBUG``) on standard
    error: argcomplete would open file descriptor 9, which may be another file's (pytest's)."""

    def _init_debug_stream(self) -> None:
        argcomplete.io.debug_stream = sys.stderr


def complete(parser: argparse.ArgumentParser, *, output_stream: TextIO | None = None,
             exit_method: Callable[[int], Any] = os._exit) -> None:
    """Answer the shell's completion request (``_ARGCOMPLETE`` is set) and exit."""
    attach_completers(parser)
    _Finder()(parser, output_stream=output_stream, exit_method=exit_method)


def script(shell: str, prog: str = "kling-pipeline") -> str:
    """The shell code that completes ``prog`` (``eval`` it, or save it where the shell looks)."""
    return shellcode([prog], shell=shell)


def add_completion_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("completion", help="print the shell code that completes kling-pipeline (bash, zsh, fish)",
                       description="Print the completion script for SHELL. bash: eval \"$(kling-pipeline completion "
                                   "bash)\" in ~/.bashrc; zsh: the same in ~/.zshrc; fish: kling-pipeline completion "
                                   "fish > ~/.config/fish/completions/kling-pipeline.fish")
    p.add_argument("shell", choices=SHELLS)
    p.set_defaults(func=cmd_completion)


def cmd_completion(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    out.write(script(args.shell))
    return 0
