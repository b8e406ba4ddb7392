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
from kling_pipeline.core.matrix import expand
from kling_pipeline.core.recipe import build_recipe
from kling_pipeline.core.yamlsrc import parse_yaml

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


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, extra: bytes = b"", *, interlaced: bool = False) -> bytes:
    """A real, small RGB PNG of one flat colour (plus ``extra`` bytes after IEND);
    ``interlaced``: Adam7, its seven passes one after the other."""
    pixel = b"\x10\x80\x80"
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
    raw = b""
    for x, y, dx, dy in passes if interlaced else ((0, 0, 1, 1),):
        w, h = (width - x + dx - 1) // dx, (height - y + dy - 1) // dy
        if w > 0 and h > 0:
            raw += (b"\x00" + pixel * w) * h
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 1 if interlaced else 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw, 9))
            + _chunk(b"IEND", b"") + extra)


def jpeg(width: int, height: int) -> bytes:
    """A real baseline JPEG of one flat grey: SOI, a quantisation table, the frame header
    (SOF0), two one-code Huffman tables, one scan in which every 8x8 block is "no change,
    end of block" (two bits), EOI."""
    dqt = b"\xff\xdb" + struct.pack(">H", 67) + b"\x00" + bytes([1] * 64)
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    one_code = bytes([1] + [0] * 15) + b"\x00"  # one code of one bit, for the symbol 0
    dht = b"\xff\xc4" + struct.pack(">H", 2 + 2 * 18) + b"\x00" + one_code + b"\x10" + one_code
    sos = b"\xff\xda" + struct.pack(">HB", 8, 1) + b"\x01\x00" + b"\x00\x3f\x00"
    blocks = -(-width // 8) * -(-height // 8)
    bits = 2 * blocks  # DC difference 0 ("0"), end of block ("0"): zero bits, then 1s to the byte
    data = bytes(bits // 8) + (bytes([(1 << (8 - bits % 8)) - 1]) if bits % 8 else b"")
    return b"\xff\xd8" + dqt + sof0 + dht + sos + data + b"\xff\xd9"
