"""The user's config file: named profiles of base URL, key source and run defaults.

``$KLING_PIPELINE_CONFIG`` names the file, else ``$XDG_CONFIG_HOME/kling-pipeline/config.yaml``
(``~/.config/kling-pipeline/config.yaml`` without XDG). YAML, read with the recipes' safe
loader, every problem reported at its ``file:line:col``::

    version: 1
    default: work                  # the profile used without --profile (optional)
    profiles:
      work:
        key_file: ~/.config/kling-pipeline/work.key   # chmod 600
        concurrency: 16            # at most this many jobs at once with this profile
        rate: 1.5                  # at most this many submits a second
      staging:
        base_url: http://127.0.0.1:8765
        key_env: STAGING_INFERENCE_KEY

A key is never written in the file itself (``key:`` is refused): the config file can then
live in a dotfiles repository while the key stays in a private file or the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..core.checker import Checker
from ..core.errors import Diagnostic, KlingError, Position, RecipeError
from ..core.localfiles import ReadProblem, read_regular
from ..core.yamlsrc import Node, parse_yaml

__all__ = ["CONFIG_ENV", "PROFILE_ENV", "ConfigError", "Profile", "UserConfig", "config_path", "load_config"]

CONFIG_ENV = "KLING_PIPELINE_CONFIG"
PROFILE_ENV = "KLING_PIPELINE_PROFILE"
TOP_KEYS = ("version", "default", "profiles")
PROFILE_KEYS = ("base_url", "key_file", "key_env", "concurrency", "rate")
MAX_CONFIG_BYTES = 1024 * 1024


class ConfigError(KlingError, ValueError):
    """The config file (or a key file it names) cannot be used. Carries every problem found."""

    invalid = True

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = tuple(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    base_url: str | None = None
    key_file: Path | None = None  # made absolute: relative to the config file's folder, ~ expanded
    key_env: str | None = None  # the environment variable holding the key
    concurrency: int | None = None  # a ceiling on jobs at once
    rate: float | None = None  # a ceiling on submits per second
    pos: Position | None = None  # where the profile is written


@dataclass(frozen=True, slots=True)
class UserConfig:
    path: Path
    exists: bool
    profiles: Mapping[str, Profile] = field(default_factory=dict)
    default: str | None = None


def config_path(env: Mapping[str, str]) -> Path:
    """Where the config file is (it need not exist)."""
    if env.get(CONFIG_ENV):
        return Path(os.path.expanduser(env[CONFIG_ENV]))
    base = env.get("XDG_CONFIG_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".config")
    return Path(base) / "kling-pipeline" / "config.yaml"


def load_config(env: Mapping[str, str]) -> UserConfig:
    """The config file, or an empty one when there is none. Raises ``ConfigError``."""
    path = config_path(env)
    try:
        data = read_regular(path, MAX_CONFIG_BYTES)
    except ReadProblem as exc:
        if exc.kind == "missing":
            if env.get(CONFIG_ENV):
                raise ConfigError([Diagnostic(None, f"{path}: no such config file (${CONFIG_ENV} names it)")]) from None
            return UserConfig(path, exists=False)
        reason = {"directory": "is a directory, not a config file", "too_large": "is larger than 1 MB",
                  "special": "is not a regular file"}.get(exc.kind, f"cannot be read: {exc.detail or exc.kind}")
        raise ConfigError([Diagnostic(None, f"{path}: {reason}")]) from None
    try:
        tree = parse_yaml(data.decode("utf-8"), str(path))
    except UnicodeDecodeError:
        raise ConfigError([Diagnostic(None, f"{path}: not UTF-8 text")]) from None
    except RecipeError as exc:
        raise ConfigError(list(exc.diagnostics)) from None
    return _build(tree, path)


def _url(check: Checker, node: Node | None, where: str) -> str | None:
    text = check.string(node, where)
    if text is None or node is None:
        return None
    try:
        parts = urlsplit(text.strip())
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        ok = False
    if not ok:
        check.error(node.pos, f"{where} must be an http:// or https:// URL, got {text!r}")
        return None
    return text.strip()


def _profile(check: Checker, name: str, node: Node, folder: Path) -> Profile | None:
    where = f"profiles.{name}"
    if check.mapping(node, where) is None:
        return None
    if "key" in node.value:
        check.error(node.value["key"].key_pos, f"{where}.key: the key itself does not go in the config file; "
                                               "put it in a file of its own (key_file, chmod 600) or in an "
                                               "environment variable (key_env)")
    check.keys(node, (*PROFILE_KEYS, "key"), where)
    values = node.value
    key_file = check.string(values.get("key_file"), f"{where}.key_file")
    key_env = check.string(values.get("key_env"), f"{where}.key_env")
    if key_file is not None and key_env is not None:
        check.error(values["key_env"].key_pos, f"{where}: give key_file or key_env, not both")
    concurrency = values.get("concurrency")
    rate = values.get("rate")
    if rate is not None and (isinstance(rate.value, bool) or not isinstance(rate.value, int | float)
                             or not 0 < rate.value < float("inf")):
        check.error(rate.pos, f"{where}.rate must be a number of submits per second > 0, got {rate.value!r}")
        rate = None
    return Profile(
        name=name, base_url=_url(check, values.get("base_url"), f"{where}.base_url"),
        key_file=None if not key_file else folder / os.path.expanduser(key_file),
        key_env=key_env or None,
        concurrency=None if concurrency is None else check.integer(concurrency, f"{where}.concurrency", 1, 1),
        rate=None if rate is None else float(rate.value), pos=node.key_pos or node.pos)


def _build(tree: Node, path: Path) -> UserConfig:
    check = Checker()
    if check.mapping(tree, "the config file") is None:
        raise ConfigError(check.problems)
    check.keys(tree, TOP_KEYS, "the config file")
    top = tree.value
    version = top.get("version")
    if version is not None and version.value != 1:
        check.error(version.pos, f"version must be 1, got {version.value!r}")
    profiles: dict[str, Profile] = {}
    node = check.mapping(top.get("profiles"), "profiles")
    if node is not None:
        for name, child in node.items():
            made = _profile(check, name, child, path.parent)
            if made is not None:
                profiles[name] = made
    default = check.string(top.get("default"), "default")
    if default is not None and node is not None and default not in node.value:
        check.error(top["default"].pos, f"default: no profile {default!r} (profiles: "
                                        f"{', '.join(profiles) or 'none'})")
    if check.problems:
        raise ConfigError(check.problems)
    return UserConfig(path, exists=True, profiles=profiles, default=default)
