"""Write the reference images used by recipes/image-to-image.yaml.

Standard library only (a tiny PNG encoder: zlib + struct), so the images can be
made again anywhere:  python recipes/refs/make_refs.py

The images are flat colour blocks: small files (about a kilobyte) that pass the
app's checks (PNG, at least 300 px a side, aspect ratio within 1:2.5 .. 2.5:1).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent

Colour = tuple[int, int, int]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width: int, height: int, top: Colour, bottom: Colour) -> bytes:
    """An 8-bit RGB PNG: ``top`` colour over ``bottom`` colour, split at mid-height."""
    rows = []
    for y in range(height):
        r, g, b = top if y < height // 2 else bottom
        rows.append(b"\x00" + bytes((r, g, b)) * width)  # filter byte 0, then the pixels
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit, truecolour
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + _chunk(b"IEND", b""))


IMAGES = {
    "teal-square.png": (512, 512, (22, 128, 128), (240, 236, 226)),
    "amber-portrait.png": (400, 600, (230, 150, 40), (60, 40, 30)),
}


def main() -> None:
    for name, (w, h, top, bottom) in IMAGES.items():
        path = HERE / name
        path.write_bytes(png(w, h, top, bottom))
        print(f"{path.relative_to(HERE.parent.parent)}: {w}x{h}, {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
