"""docs/notebook.md is executed as a notebook would run it: each ``python`` block in turn, in
one namespace, with top-level ``await`` allowed; what each block prints is the ``text`` block
after it."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs/notebook.md").read_text(encoding="utf-8")
CELLS = re.findall(r"```python\n(.*?)```\n\n```text\n(.*?)```", DOC, re.DOTALL)


def test_the_example_has_its_cells() -> None:
    assert len(CELLS) == 4


def test_the_notebook_example_prints_what_the_docs_say(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for key in ("INFERENCE_API_KEY", "INFERENCE_API_KEY_FILE", "INFERENCE_BASE_URL", "KLING_PIPELINE_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    namespace: dict[str, object] = {}
    for source, expected in CELLS:
        code = compile(source, "<cell>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            pending = eval(code, namespace)
            if pending is not None:  # a cell with a top-level await: run it as Jupyter would
                asyncio.run(pending)
        assert printed.getvalue() == expected
    assert len(list((tmp_path / "out" / "mugs").glob("*.png"))) == 4
