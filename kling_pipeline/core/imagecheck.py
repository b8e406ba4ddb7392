"""Is this a whole PNG or JPEG? Structure checks of an image's bytes, standard library only.

The first bytes of a file say what it claims to be and how large it is; they do not
say that the rest is there. A reference image cut short (a failed copy, a download
that stopped) would pass a header check and fail at the provider, after the upload.
``inspect_image`` reads the whole file:

* **PNG**: every chunk is whole and its CRC is right; ``IHDR`` comes first and holds a
  valid size, bit depth and colour type; a palette image has ``PLTE``; the ``IDAT``
  chunks are together; the compressed image data inflates (zlib) to exactly the bytes
  the header's size calls for, each scanline with a known filter; ``IEND`` ends it
  (bytes after ``IEND`` are ignored, as decoders do).
* **JPEG**: a marker walk: every segment is whole; a frame header (``SOF``) gives the
  size before the first scan (``SOS``); each scan's entropy-coded data runs to the next
  marker; the file ends with ``EOI``. (The entropy-coded data is not decoded.)

A PNG whose image data would inflate past ``MAX_DECODED`` bytes is refused rather than
inflated (a small file can claim a huge image).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

__all__ = ["MAX_DECODED", "ImageInfo", "NotAnImage", "inspect_image"]

MAX_DECODED = 512 * 1024 * 1024  # decoded PNG image data this check inflates, at most
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}  # colour type -> depths
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# the seven passes of an interlaced PNG: first column and row, column and row steps
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_INFLATE_STEP = 1 << 20


@dataclass(frozen=True, slots=True)
class ImageInfo:
    media_type: str
    width: int
    height: int


class NotAnImage(Exception):
    """The bytes are not a whole image of the kind they claim to be (the message says how)."""


def inspect_image(data: bytes) -> ImageInfo | None:
    """The media type and size of a whole PNG or JPEG; None when the bytes are neither
    (by their first bytes). Raises ``NotAnImage`` when they start as one but are not whole."""
    if data.startswith(_PNG_SIGNATURE):
        return _png(memoryview(data))
    if data.startswith(b"\xff\xd8\xff"):
        return _jpeg(data)
    return None


def _png_rows(width: int, height: int, bits_per_pixel: int, interlaced: bool) -> list[tuple[int, int]]:
    """(bytes per scanline including its filter byte, scanlines) of each pass."""
    passes = _ADAM7 if interlaced else ((0, 0, 1, 1),)
    rows = []
    for x, y, dx, dy in passes:
        w, h = (width - x + dx - 1) // dx, (height - y + dy - 1) // dy
        if w > 0 and h > 0:
            rows.append((1 + (w * bits_per_pixel + 7) // 8, h))
    return rows


def _png(data: memoryview) -> ImageInfo:
    pos, size = 8, len(data)
    header: tuple[int, int, int, int, bool] | None = None
    seen: list[bytes] = []  # chunk types, in order
    idat: list[memoryview] = []
    while True:
        if pos + 12 > size:
            raise NotAnImage("is a PNG cut short (no IEND chunk: the file is incomplete)")
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if length > 0x7FFFFFFF or pos + 12 + length > size:
            raise NotAnImage(f"is a PNG cut short (its {kind.decode('latin-1')!r} chunk runs past the end of the file)")
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        if zlib.crc32(body, zlib.crc32(kind)) != crc:
            raise NotAnImage(f"is a damaged PNG (the checksum of its {kind.decode('latin-1')!r} chunk is wrong)")
        if not seen and kind != b"IHDR":
            raise NotAnImage("is a damaged PNG (it does not start with an IHDR chunk)")
        if kind == b"IHDR":
            header = _png_header(body, seen)
        elif kind == b"IDAT":
            if idat and seen[-1] != b"IDAT":
                raise NotAnImage("is a damaged PNG (its IDAT chunks are not together)")
            idat.append(body)
        elif kind == b"IEND":
            break
        seen.append(kind)
        pos += 12 + length
    assert header is not None  # the first chunk was IHDR
    width, height, depth, colour, interlaced = header
    if colour == 3 and b"PLTE" not in seen:
        raise NotAnImage("is a damaged PNG (a palette image without a PLTE chunk)")
    if not idat:
        raise NotAnImage("is a damaged PNG (it has no image data: no IDAT chunk)")
    _inflate(idat, _png_rows(width, height, depth * _PNG_CHANNELS[colour], interlaced))
    return ImageInfo("image/png", width, height)


def _png_header(body: memoryview, seen: list[bytes]) -> tuple[int, int, int, int, bool]:
    if seen or len(body) != 13:
        raise NotAnImage("is a damaged PNG (its IHDR chunk is misplaced or the wrong size)")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", body)
    if not (0 < width <= 0x7FFFFFFF and 0 < height <= 0x7FFFFFFF):
        raise NotAnImage(f"is a damaged PNG (its header gives the size {width}x{height})")
    if depth not in _PNG_DEPTHS.get(colour, ()) or compression or filtering or interlace > 1:
        raise NotAnImage(f"is a damaged PNG (its header is invalid: bit depth {depth}, colour type {colour})")
    return width, height, depth, colour, bool(interlace)


def _inflate(chunks: list[memoryview], rows: list[tuple[int, int]]) -> None:
    """Inflate the image data, a piece at a time (nothing is kept), checking that it is
    exactly as long as the scanlines and that each scanline's filter type is known."""
    expected = sum(stride * count for stride, count in rows)
    if expected > MAX_DECODED:
        raise NotAnImage(f"is a PNG whose image data would be {expected:,} bytes decoded, more than the "
                         f"{MAX_DECODED:,} this check reads")
    segments, start = [], 0  # where each pass's scanlines start in the decoded stream
    for stride, count in rows:
        segments.append((start, stride, start + stride * count))
        start += stride * count
    inflater = zlib.decompressobj()
    done = 0
    try:
        for chunk in chunks:
            pending = bytes(chunk)
            while not inflater.eof:
                piece = inflater.decompress(pending, _INFLATE_STEP)
                pending = inflater.unconsumed_tail
                _check_filters(piece, done, segments)
                done += len(piece)
                if done > expected:
                    raise NotAnImage("is a damaged PNG (it holds more image data than its size calls for)")
                if not pending and len(piece) < _INFLATE_STEP:  # this chunk is used up
                    break
        if not inflater.eof:
            raise NotAnImage("is a PNG cut short (its compressed image data stops before the end)")
    except zlib.error:
        raise NotAnImage("is a damaged PNG (its compressed image data cannot be decoded)") from None
    if done != expected:
        raise NotAnImage(f"is a damaged PNG (its image data is {done:,} bytes decoded; its size calls for "
                         f"{expected:,})")


def _check_filters(piece: bytes, offset: int, segments: list[tuple[int, int, int]]) -> None:
    end = offset + len(piece)
    for start, stride, stop in segments:
        first = start + max(0, -(-(offset - start) // stride)) * stride  # first scanline start >= offset
        last = min(end, stop)
        if first < last and max(piece[first - offset:last - offset:stride]) > 4:
            raise NotAnImage("is a damaged PNG (a scanline has an unknown filter type)")


_CUT_JPEG = "is a JPEG cut short (it does not end with an EOI marker)"


def _jpeg(data: bytes) -> ImageInfo:
    pos, size, frame, scans = 2, len(data), None, 0
    while True:
        pos = data.find(b"\xff", pos)  # stray bytes before a marker are skipped, as decoders do
        while 0 <= pos < size and data[pos] == 0xFF:  # the marker's FF and any fill bytes
            pos += 1
        if pos < 0 or pos >= size:
            raise NotAnImage(_CUT_JPEG)
        marker, pos = data[pos], pos + 1
        if marker == 0xD9:  # EOI
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM, RSTn: no length
            continue
        if marker in (0x00, 0xD8):
            raise NotAnImage("is a damaged JPEG (an unexpected marker)")
        if pos + 2 > size:
            raise NotAnImage(_CUT_JPEG)
        (length,) = struct.unpack(">H", data[pos:pos + 2])
        if length < 2 or pos + length > size:
            raise NotAnImage("is a JPEG cut short (a segment runs past the end of the file)")
        segment = data[pos + 2:pos + length]
        pos += length
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a frame header: the size
            frame = _jpeg_frame(segment, frame)
        elif marker == 0xDA:  # a scan: its entropy-coded data runs to the next marker
            if frame is None:
                raise NotAnImage("is a damaged JPEG (image data before the frame header that gives its size)")
            if not segment or len(segment) != 4 + 2 * segment[0]:
                raise NotAnImage("is a damaged JPEG (a scan header is invalid)")
            pos = _entropy_end(data, pos)
            scans += 1
    if frame is None:
        raise NotAnImage("is a damaged JPEG (it has no frame header: no size, no image)")
    if not scans:
        raise NotAnImage("is a damaged JPEG (it has no image data: no scan)")
    return ImageInfo("image/jpeg", *frame)


def _jpeg_frame(segment: bytes, earlier: tuple[int, int] | None) -> tuple[int, int]:
    if earlier is not None:
        raise NotAnImage("is a damaged JPEG (it has two frame headers)")
    if len(segment) < 6 or len(segment) != 6 + 3 * segment[5] or not 1 <= segment[5] <= 4:
        raise NotAnImage("is a damaged JPEG (its frame header is invalid)")
    height, width = struct.unpack(">HH", segment[1:5])
    if not width or not height:
        raise NotAnImage(f"is a JPEG whose frame header gives the size {width}x{height}")
    return width, height


def _entropy_end(data: bytes, pos: int) -> int:
    """Where a scan's entropy-coded data ends: at the first marker that is not a stuffed
    byte (``FF 00``) or a restart marker."""
    while True:
        at = data.find(b"\xff", pos)
        if at < 0 or at + 1 >= len(data):
            raise NotAnImage("is a JPEG cut short (its image data stops before the end)")
        following = data[at + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7:  # a stuffed FF byte, a restart marker
            pos = at + 2
        elif following == 0xFF:  # a fill byte before a marker
            pos = at + 1
        else:
            return at
