"""Small helpers for tests: a real PNG writer (stdlib only), the emulators' test limits."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from kling_pipeline.emulator import Limit, RateLimits

TEST_LIMITS = RateLimits(
    runs=Limit(50, 1.0, burst=50),
    reads=Limit(500, 1.0, burst=500),
    uploads=Limit(20, 1.0, burst=20),
)
"""What the test emulators enforce unless a test says otherwise: limits stay on (a client
must always live with them), at rates that keep the tests fast."""


def png_bytes(width: int, height: int, rgb: tuple[int, int, int] = (200, 80, 40)) -> bytes:
    row = b"\x00" + bytes(rgb) * width
    raw = row * height

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def write_png(path: Path, width: int, height: int, rgb: tuple[int, int, int] = (200, 80, 40)) -> Path:
    path.write_bytes(png_bytes(width, height, rgb))
    return path
