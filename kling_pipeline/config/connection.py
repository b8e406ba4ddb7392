"""One resolution, for every command that talks to the API: which base URL, which key, and
the run defaults of the profile in use.

The rule is the command line first, then the environment, then the config file:

* the profile: ``--profile``, else ``$KLING_PIPELINE_PROFILE``, else the file's ``default``;
* the base URL: ``--base-url``; then a profile named by ``--profile``; then
  ``$INFERENCE_BASE_URL``; then the profile in use; then ``https://api.inference.sh``;
* the key: a profile named by ``--profile`` (its ``key_env`` or ``key_file``), then
  ``$INFERENCE_API_KEY``, then the file named by ``$INFERENCE_API_KEY_FILE``, then the
  profile in use.

A profile's ``concurrency`` and ``rate`` are ceilings for what runs with it
(``--concurrency``/``--rate`` on the command line set them outright).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..api.client import Secret
from ..core.errors import Diagnostic, UsageError
from .keys import key_from_file, key_from_text
from .profiles import PROFILE_ENV, ConfigError, Profile, UserConfig, load_config

__all__ = ["BASE_URL_ENV", "DEFAULT_BASE_URL", "KEY_ENV", "KEY_FILE_ENV", "Connection", "MissingKey", "choose_profile",
           "resolve_connection"]

DEFAULT_BASE_URL = "https://api.inference.sh"
KEY_ENV = "INFERENCE_API_KEY"
KEY_FILE_ENV = "INFERENCE_API_KEY_FILE"
BASE_URL_ENV = "INFERENCE_BASE_URL"


class MissingKey(UsageError):
    """No API key anywhere the rule looks."""


@dataclass(frozen=True, slots=True)
class Connection:
    base_url: str
    base_url_from: str  # where the base URL came from, for people ("--base-url", "$INFERENCE_BASE_URL", ...)
    key: Secret
    key_from: str  # where the key came from (never the key)
    profile: Profile | None
    config: UserConfig


def choose_profile(config: UserConfig, name: str | None, env: Mapping[str, str]) -> tuple[Profile | None, bool]:
    """The profile in use and whether the command line named it."""
    explicit = name is not None
    name = name if explicit else (env.get(PROFILE_ENV) or config.default)
    if not name:
        return None, False
    profile = config.profiles.get(name)
    if profile is None:
        where = "--profile" if explicit else f"${PROFILE_ENV}" if env.get(PROFILE_ENV) else "default"
        known = ", ".join(config.profiles) or "none"
        found = f"{config.path}" if config.exists else f"{config.path} (there is no such file)"
        raise ConfigError([Diagnostic(None, f"{where}: no profile {name!r} in {found}; profiles: {known}")])
    return profile, explicit


def _profile_key(profile: Profile, env: Mapping[str, str]) -> tuple[Secret, str] | None:
    if profile.key_env:
        key = key_from_text(env.get(profile.key_env, ""), f"${profile.key_env}")
        if key is None:
            raise ConfigError([Diagnostic(profile.pos, f"profile {profile.name!r}: ${profile.key_env} "
                                                       "(its key_env) is not set")])
        return key, f"${profile.key_env} (profile {profile.name})"
    if profile.key_file:
        return (key_from_file(profile.key_file, f"profile {profile.name!r}: key_file"),
                f"{profile.key_file} (profile {profile.name})")
    return None


def _env_key(env: Mapping[str, str]) -> tuple[Secret, str] | None:
    key = key_from_text(env.get(KEY_ENV, ""), f"${KEY_ENV}")
    if key is not None:
        return key, f"${KEY_ENV}"
    if env.get(KEY_FILE_ENV, "").strip():
        path = Path(os.path.expanduser(env[KEY_FILE_ENV].strip()))
        return key_from_file(path, f"${KEY_FILE_ENV}:"), f"{path} (${KEY_FILE_ENV})"
    return None


def resolve_connection(env: Mapping[str, str], *, profile: str | None = None, base_url: str | None = None,
                       key: Secret | None = None, hint: str = "") -> Connection:
    """Base URL and key by the rule above (a ``key`` given by the caller comes first).
    Raises ``MissingKey``, ``ConfigError``."""
    config = load_config(env)
    chosen, explicit = choose_profile(config, profile, env)
    urls = [(base_url, "--base-url")]
    keys: list[tuple[Secret, str] | None] = [None if key is None else (key, "the caller")]
    if chosen is not None and explicit:
        urls.append((chosen.base_url, f"profile {chosen.name}"))
        if key is None:
            keys.append(_profile_key(chosen, env))
    urls.append((env.get(BASE_URL_ENV, "").strip() or None, f"${BASE_URL_ENV}"))
    if chosen is not None and not explicit:
        urls.append((chosen.base_url, f"profile {chosen.name}"))
    urls.append((DEFAULT_BASE_URL, "the default"))
    url, url_from = next((u, w) for u, w in urls if u)
    found = next((k for k in keys if k is not None), None) or _env_key(env)
    if found is None and chosen is not None and not explicit:
        found = _profile_key(chosen, env)
    if found is None:
        raise MissingKey(f"no API key: export {KEY_ENV} (or {KEY_FILE_ENV}, a file only you can read), "
                         f"or give a profile a key_file (see docs/config.md){hint}")
    return Connection(url, url_from, found[0], found[1], chosen, config)
