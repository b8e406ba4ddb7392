"""Output images: a minimal PNG encoder and a deterministic pattern per prompt.

Each image is a vertical gradient between two colours taken from a hash of the
prompt, crossed by diagonal stripes whose width and phase come from a hash of the
image's seed: the whole input and the sample index (the k-th submission of an
identical input gets sample index k), plus the image's place among several. Same
(seed, prompt, size) -> identical bytes.

Rows are built directly in PNG 'Sub' filter form and compressed at zlib level 1, so
a default-size image (image scale 8) takes a fraction of a millisecond; the engine
draws an output only when it is first downloaded.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["ImageMaker", "PngImage", "encode_png", "image_problem", "jpeg_size", "png_size"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(
    width: int,
    height: int,
    rows: Iterable[bytes],
    text: Mapping[str, str] | None = None,
    *,
    filter_type: int = 0,
    level: int = 6,
) -> bytes:
    """An 8-bit RGB PNG from ``height`` rows of ``3 * width`` bytes each, already filtered
    with PNG filter ``filter_type`` (0, the default, is the plain pixels)."""
    if width < 1 or height < 1:
        raise ValueError(f"PNG size must be at least 1x1, got {width}x{height}")
    if filter_type not in range(5):
        raise ValueError(f"PNG filter type must be 0..4, got {filter_type}")
    raw = bytearray()
    count = 0
    tag = bytes([filter_type])
    for row in rows:
        if len(row) != 3 * width:
            raise ValueError(f"row {count} has {len(row)} bytes, expected {3 * width}")
        raw += tag
        raw += row
        count += 1
    if count != height:
        raise ValueError(f"got {count} rows, expected {height}")
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunks = [_PNG_SIGNATURE, _chunk(b"IHDR", header)]
    for key, value in (text or {}).items():
        chunks.append(_chunk(b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1")))
    chunks.append(_chunk(b"IDAT", zlib.compress(raw, level)))
    chunks.append(_chunk(b"IEND", b""))
    return b"".join(chunks)


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR; ``ValueError`` if it is not a PNG."""
    if len(data) < 24 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's first SOF marker; ``ValueError`` if none is found."""
    if not data.startswith(b"\xff\xd8"):
        raise ValueError("not a JPEG")
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            raise ValueError("corrupt JPEG")
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(width), int(height)
        i += 2 + length
    raise ValueError("no frame header in JPEG")


def image_problem(data: bytes, limits: Mapping[str, object]) -> str | None:
    """What Kling would refuse about a reference image (``x-file`` limits of the schema), or None."""
    max_bytes = limits.get("max_bytes")
    if isinstance(max_bytes, int) and len(data) > max_bytes:
        return f"image is {len(data)} bytes, more than the {max_bytes} allowed"
    try:
        width, height = png_size(data) if data.startswith(_PNG_SIGNATURE) else jpeg_size(data)
    except ValueError:
        return "image must be a PNG or JPEG file"
    min_w, min_h = limits.get("min_width", 0), limits.get("min_height", 0)
    if isinstance(min_w, int) and isinstance(min_h, int) and (width < min_w or height < min_h):
        return f"image is {width}x{height} px; width and height must be at least {min_w}x{min_h}"
    low, high = limits.get("min_aspect_ratio"), limits.get("max_aspect_ratio")
    ratio = width / height if height else 0.0
    if isinstance(low, int | float) and isinstance(high, int | float) and not low <= ratio <= high:
        return f"image aspect ratio {ratio:.2f} is outside {low}..{high}"
    return None


@dataclass(frozen=True, slots=True)
class PngImage:
    data: bytes
    width: int
    height: int


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> bytes:
    return bytes((round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t), round(a[2] + (b[2] - a[2]) * t)))


GRADIENT_BANDS = 16
"""The vertical gradient moves in this many bands (cheap: one stripe line per band)."""


def _sub(a: bytes, b: bytes) -> bytes:
    return bytes(((a[0] - b[0]) & 0xFF, (a[1] - b[1]) & 0xFF, (a[2] - b[2]) & 0xFF))


def _sub_filtered_rows(width: int, height: int, prompt_hash: bytes, sample_hash: bytes) -> Iterable[bytes]:
    """Rows of the pattern, already in PNG 'Sub' filter form (filter type 1).

    Each row is a slice of a periodic line of light and dark stripes. Under the Sub
    filter (each byte minus the byte one pixel to its left) such a line is zero except
    at stripe edges, so the filtered rows are built directly from a periodic
    'difference' line, and zlib compresses them almost for free.
    """
    top = (prompt_hash[0], prompt_hash[1], prompt_hash[2])
    bottom = (prompt_hash[3], prompt_hash[4], prompt_hash[5])
    stripe = max(1, width // (6 + sample_hash[0] % 10))
    period = 2 * stripe
    phase = int.from_bytes(sample_hash[1:3], "big") % period
    direction = 1 if prompt_hash[6] & 1 else -1
    repeats = width // period + 2
    bands = min(height, GRADIENT_BANDS)
    zeros = b"\x00" * (3 * (stripe - 1))
    lines: dict[int, tuple[bytes, bytes]] = {}
    for y in range(height):
        band = y * bands // height
        pair = lines.get(band)
        if pair is None:
            light = _mix(top, bottom, band / max(1, bands - 1))
            dark = bytes((light[0] * 5 // 9, light[1] * 5 // 9, light[2] * 5 // 9))
            line = (light * stripe + dark * stripe) * repeats
            diff = (_sub(light, dark) + zeros + _sub(dark, light) + zeros) * repeats
            pair = lines[band] = (line, diff)
        line, diff = pair
        offset = (direction * y + phase) % period
        yield line[3 * offset : 3 * offset + 3] + diff[3 * offset + 3 : 3 * (offset + width)]


class ImageMaker:
    """Draws output PNGs at a size divided by the image scale (pure: safe in a worker thread)."""

    def __init__(self, scale: int) -> None:
        self._scale = scale

    def scaled(self, width: int, height: int) -> tuple[int, int]:
        """A nominal pixel size divided by the scale (rounded, at least 1 px)."""
        return max(1, round(width / self._scale)), max(1, round(height / self._scale))

    @staticmethod
    def render(width: int, height: int, seed: str, prompt: str, comment: str) -> PngImage:
        """Draw the image: its colours from ``prompt``, its stripes from ``seed``."""
        prompt_hash = hashlib.sha256(prompt.encode("utf-8")).digest()
        sample_hash = hashlib.sha256(seed.encode()).digest()
        text = {"Software": "kling-pipeline emulator", "Comment": comment}
        rows = _sub_filtered_rows(width, height, prompt_hash, sample_hash)
        data = encode_png(width, height, rows, text, filter_type=1, level=1)
        return PngImage(data, width, height)

    @classmethod
    def render_bytes(cls, width: int, height: int, seed: str, prompt: str, comment: str) -> bytes:
        return cls.render(width, height, seed, prompt, comment).data

    @staticmethod
    def is_large(width: int, height: int) -> bool:
        return width * height > 400_000
