"""Output media other than PNG: MP4 video (ISO BMFF around an H.264 track) and WAV audio.

Both are deterministic for a given seed, small, and valid for ordinary readers: the MP4
has ``ftyp``, then ``moov`` (before the data, so a browser reads the metadata first: the
``mvhd`` duration is the requested length) and ``mdat``; the WAV is 16-bit mono PCM
written with the standard library's ``wave``.
"""

from __future__ import annotations

import hashlib
import io
import math
import struct
import wave

from .h264 import encode_h264

__all__ = ["TIMESCALE", "encode_mp4", "encode_wav", "video_size"]

TIMESCALE = 1000
"""Ticks per second of the movie and of the track (durations are whole milliseconds)."""
_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def _box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I", 8 + len(body)) + kind + body


def _full(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *parts)


def video_size(width: int, height: int) -> tuple[int, int]:
    """The nearest even size of at least 2x2 (H.264 4:2:0 needs even dimensions)."""
    return max(2, width + width % 2), max(2, height + height % 2)


def _colours(seed: bytes) -> list[tuple[int, int, int]]:
    return [(seed[i], 96 + seed[i + 1] // 4, 96 + seed[i + 2] // 4) for i in range(0, 12, 3)]


def _sample_table(sizes: list[int], deltas: list[int], data_offset: int, avc1: bytes) -> bytes:
    runs: list[list[int]] = []
    for delta in deltas:
        if runs and runs[-1][1] == delta:
            runs[-1][0] += 1
        else:
            runs.append([1, delta])
    return _box(
        b"stbl",
        _full(b"stsd", 0, 0, struct.pack(">I", 1), avc1),
        _full(b"stts", 0, 0, struct.pack(">I", len(runs)), *(struct.pack(">II", n, d) for n, d in runs)),
        _full(b"stss", 0, 0, struct.pack(">II", 1, 1)),  # only the first sample is a key frame
        _full(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, len(sizes), 1)),  # one chunk holds every sample
        _full(b"stsz", 0, 0, struct.pack(">II", 0, len(sizes)), *(struct.pack(">I", s) for s in sizes)),
        _full(b"stco", 0, 0, struct.pack(">II", 1, data_offset)),
    )


def _avc1(width: int, height: int, sps: bytes, pps: bytes) -> bytes:
    avcc = _box(
        b"avcC",
        bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]),  # version, profile, compat, level, 4-byte lengths, 1 SPS
        struct.pack(">H", len(sps)), sps, bytes([1]), struct.pack(">H", len(pps)), pps,
    )
    name = b"kling-pipeline emulator"
    return _box(
        b"avc1",
        bytes(6), struct.pack(">H", 1),  # reserved, data_reference_index
        bytes(16), struct.pack(">HH", width, height),
        struct.pack(">III", 0x480000, 0x480000, 0), struct.pack(">H", 1),  # 72 dpi, frame_count
        bytes([len(name)]) + name.ljust(31, b"\x00"), struct.pack(">Hh", 0x18, -1),
        avcc,
    )


def _moov(width: int, height: int, duration: int, stbl: bytes) -> bytes:
    mvhd = _full(
        b"mvhd", 0, 0, struct.pack(">IIII", 0, 0, TIMESCALE, duration),
        struct.pack(">IH", 0x10000, 0x100), bytes(10), _MATRIX, bytes(24), struct.pack(">I", 2),
    )
    tkhd = _full(
        b"tkhd", 0, 3, struct.pack(">IIIII", 0, 0, 1, 0, duration), bytes(8),
        struct.pack(">hhhH", 0, 0, 0, 0), _MATRIX, struct.pack(">II", width << 16, height << 16),
    )
    mdhd = _full(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, TIMESCALE, duration, 0x55C4, 0))  # language "und"
    hdlr = _full(b"hdlr", 0, 0, struct.pack(">I", 0), b"vide", bytes(12), b"VideoHandler\x00")
    dinf = _box(b"dinf", _full(b"dref", 0, 0, struct.pack(">I", 1), _full(b"url ", 0, 1)))
    minf = _box(b"minf", _full(b"vmhd", 0, 1, bytes(8)), dinf, stbl)
    return _box(b"moov", mvhd, _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr, minf)))


def encode_mp4(seconds: float, width: int, height: int, seed: str) -> bytes:
    """An MP4 of ``seconds`` (rounded to the millisecond) showing one still picture, one frame a
    second; ``width`` and ``height`` are rounded up to even numbers."""
    duration = max(1, round(seconds * TIMESCALE))
    width, height = video_size(width, height)
    frames = math.ceil(duration / TIMESCALE)
    deltas = [TIMESCALE] * (frames - 1) + [duration - TIMESCALE * (frames - 1)]
    stream = encode_h264(width, height, frames, _colours(hashlib.sha256(seed.encode()).digest()))
    samples = [struct.pack(">I", len(nal)) + nal for nal in stream.frames]
    avc1 = _avc1(width, height, stream.sps, stream.pps)
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isomiso2avc1mp41")
    sizes = [len(s) for s in samples]
    probe = _moov(width, height, duration, _sample_table(sizes, deltas, 0, avc1))
    offset = len(ftyp) + len(probe) + 8  # the stco entry is fixed-size: the moov does not grow
    moov = _moov(width, height, duration, _sample_table(sizes, deltas, offset, avc1))
    return ftyp + moov + _box(b"mdat", *samples)


def _tone(sample_rate: int, seed: bytes) -> bytes:
    """One period of a quiet sine (16-bit little-endian), its pitch from ``seed`` (about 200-800 Hz)."""
    period = max(2, sample_rate // (200 + int.from_bytes(seed[:2], "big") % 600))
    return b"".join(
        struct.pack("<h", round(6000 * math.sin(2 * math.pi * i / period))) for i in range(period)
    )


def encode_wav(seconds: float, seed: str, sample_rate: int = 16_000) -> bytes:
    """A mono 16-bit WAV of ``seconds`` (rounded to the sample): a steady tone."""
    frames = max(1, round(seconds * sample_rate))
    period = _tone(sample_rate, hashlib.sha256(seed.encode()).digest())
    whole, part = divmod(2 * frames, len(period))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(period * whole + period[:part])
    return buffer.getvalue()

