"""Fixtures for the recipe-core tests: recipe files in a temporary working directory."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

WriteRecipe = Callable[..., Path]


@pytest.fixture
def write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> WriteRecipe:
    """Write a (dedented) recipe file under ``tmp_path`` and return its path relative
    to the working directory, which is ``tmp_path``: messages then show ``r.yaml``."""
    monkeypatch.chdir(tmp_path)

    def write_recipe(text: str, name: str = "r.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return Path(name)

    return write_recipe
