"""Helpers shared by the recipe-core tests."""

from __future__ import annotations

import io
import struct
import textwrap
import zlib
from pathlib import Path
from typing import Any

import pytest

from kling_pipeline import Plan, RecipeError, plan_file
from kling_pipeline.cli import main
from kling_pipeline.matrix import expand
from kling_pipeline.recipe import build_recipe
from kling_pipeline.yamlsrc import parse_yaml

HEAD = "version: 1\napp: klingai/image-o1@0pbaxv40\n"


def errors(path: Path, **options: Any) -> list[str]:
    """Every diagnostic ``plan_file`` raises for ``path``, as printed."""
    with pytest.raises(RecipeError) as info:
        plan_file(path, **options)
    return [str(d) for d in info.value.diagnostics]


def ok(path: Path, **options: Any) -> Plan:
    return plan_file(path, **options)


def warnings(plan: Plan) -> list[str]:
    return [str(w) for w in plan.warnings]


def cli(*argv: str) -> tuple[int, str, str]:
    """Run the command in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def combos(matrix: str) -> list[dict[str, Any]]:
    """Expand a ``matrix:`` block (YAML text, without the ``matrix:`` line) purely."""
    text = "version: 1\napp: klingai/image-o1\ninput: {prompt: x}\nmatrix:\n"
    text += textwrap.indent(textwrap.dedent(matrix).strip("\n"), "  ") + "\n"
    recipe = build_recipe(parse_yaml(text, "m.yaml"), "m.yaml")
    return [dict(c.values) for c in expand(recipe.matrix)]


def png(width: int, height: int, extra: bytes = b"") -> bytes:
    """A real, small RGB PNG of one flat colour (plus ``extra`` bytes after IEND)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = (b"\x00" + b"\x10\x80\x80" * width) * height
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b"") + extra)


def jpeg(width: int, height: int) -> bytes:
    """The header of a baseline JPEG (SOI, APP0/JFIF, a quantisation table, SOF0): all
    the plan-time check reads. Not decodable as a picture; enough for the size check."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    dqt = b"\xff\xdb" + struct.pack(">H", 67) + b"\x00" + bytes(range(64))
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x11\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + app0 + dqt + sof0 + b"\xff\xd9"
