"""Readers for the emulator's MP4 and WAV outputs, written from the formats' specifications
(ISO/IEC 14496-12 boxes, H.264 NAL units; WAV through the standard library's ``wave``)."""

from __future__ import annotations

import io
import struct
import wave
from dataclasses import dataclass

CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"dinf"}


def boxes(data: bytes, start: int = 0, end: int | None = None, prefix: str = "") -> dict[str, bytes]:
    """Every box by its path (``moov/trak/mdia/mdhd``) -> its payload; checks that sizes tile exactly."""
    found: dict[str, bytes] = {}
    stop = len(data) if end is None else end
    pos = start
    while pos < stop:
        assert pos + 8 <= stop, f"truncated box header at {pos}"
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        assert 8 <= size <= stop - pos, f"box {kind!r} at {pos} has size {size}, {stop - pos} bytes left"
        path = prefix + kind.decode("latin-1")
        found[path] = data[pos + 8 : pos + size]
        if kind in CONTAINERS:
            found.update(boxes(data, pos + 8, pos + size, path + "/"))
        pos += size
    assert pos == stop, "boxes overrun their parent"
    return found


@dataclass(frozen=True)
class Mp4:
    major_brand: bytes
    top_level: list[str]
    timescale: int
    duration: int
    track_duration: int
    media_timescale: int
    media_duration: int
    handler: bytes
    width: int
    height: int
    codec: bytes
    sample_count: int
    sample_ticks: int
    nal_types: list[int]

    @property
    def seconds(self) -> float:
        return self.duration / self.timescale


def read_mp4(data: bytes) -> Mp4:
    found = boxes(data)
    top = [path for path in found if "/" not in path]
    stbl = "moov/trak/mdia/minf/stbl/"
    _, _, timescale, duration = struct.unpack(">IIII", found["moov/mvhd"][4:20])
    track_duration = struct.unpack(">I", found["moov/trak/tkhd"][20:24])[0]
    width, height = (v >> 16 for v in struct.unpack(">II", found["moov/trak/tkhd"][-8:]))
    _, _, media_timescale, media_duration = struct.unpack(">IIII", found["moov/trak/mdia/mdhd"][4:20])
    handler = found["moov/trak/mdia/hdlr"][8:12]
    stsd = found[stbl + "stsd"]
    codec = stsd[12:16]
    entries = struct.unpack(">I", found[stbl + "stts"][4:8])[0]
    runs = [struct.unpack(">II", found[stbl + "stts"][8 + 8 * i : 16 + 8 * i]) for i in range(entries)]
    _, count = struct.unpack(">II", found[stbl + "stsz"][4:12])
    sizes = struct.unpack(f">{count}I", found[stbl + "stsz"][12 : 12 + 4 * count])
    offset = struct.unpack(">I", found[stbl + "stco"][8:12])[0]
    assert top == ["ftyp", "moov", "mdat"], top
    mdat_start = len(found["ftyp"]) + len(found["moov"]) + 3 * 8
    assert offset == mdat_start and offset + sum(sizes) == len(data), "samples must fill the mdat exactly"
    nal_types = []
    for size in sizes:  # each sample: 4-byte length-prefixed NAL units
        length = struct.unpack(">I", data[offset : offset + 4])[0]
        assert length + 4 == size
        nal_types.append(data[offset + 4] & 0x1F)
        offset += size
    return Mp4(found["ftyp"][:4], top, timescale, duration, track_duration, media_timescale, media_duration,
               handler, width, height, codec, sum(n for n, _ in runs), sum(n * d for n, d in runs), nal_types)


@dataclass(frozen=True)
class Wav:
    channels: int
    sample_width: int
    rate: int
    frames: int
    samples: bytes

    @property
    def seconds(self) -> float:
        return self.frames / self.rate


def read_wav(data: bytes) -> Wav:
    with wave.open(io.BytesIO(data), "rb") as audio:
        frames = audio.getnframes()
        return Wav(audio.getnchannels(), audio.getsampwidth(), audio.getframerate(), frames, audio.readframes(frames))
