"""Reference images: checked at plan time, relative to the file that wrote them, keyed by content."""

from __future__ import annotations

import base64
import hashlib
import os
import struct
import zlib
from pathlib import Path

import pytest

from kling_pipeline import load_recipe, plan
from kling_pipeline.core.localfiles import FileLimits, FileProblem, LocalFile, check_bytes, check_path, image_size

from .conftest import WriteRecipe
from .util import HEAD, errors, jpeg, ok, png


def image_recipe(write: WriteRecipe, value: str, name: str = "r.yaml") -> Path:
    return write(HEAD + f"input:\n  prompt: restyle\n  image: {value!r}\n", name)


def test_a_valid_png_is_checked_and_hashed(write: WriteRecipe, tmp_path: Path) -> None:
    data = png(400, 300)
    (tmp_path / "ref.png").write_bytes(data)
    p = ok(image_recipe(write, "ref.png"))
    rendered = p.render(p.jobs[0])
    assert rendered.request == {"prompt": "restyle", "image": "ref.png"}
    assert rendered.files["image"] == LocalFile((tmp_path / "ref.png").resolve(), hashlib.sha256(data).hexdigest(),
                                                len(data), "image/png", 400, 300)


def test_path_is_relative_to_the_recipe_not_the_working_directory(write: WriteRecipe, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    image_recipe(write, "refs/a.png", "sweeps/r.yaml")
    (tmp_path / "sweeps/refs").mkdir()
    (tmp_path / "sweeps/refs/a.png").write_bytes(png(300, 300))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    p = ok(Path("../sweeps/r.yaml"))
    assert p.render(p.jobs[0]).files["image"].path == (tmp_path / "sweeps/refs/a.png").resolve()


def test_missing_file(write: WriteRecipe) -> None:
    path = write(HEAD + "matrix:\n  ref: [refs/nope.png]\ninput:\n  prompt: x\n  image: '{{ ref }}'\n")
    assert errors(path) == ["r.yaml:4:9: [ref=refs/nope.png] input.image: file not found: refs/nope.png"]


def test_a_directory_is_not_an_image(write: WriteRecipe, tmp_path: Path) -> None:
    (tmp_path / "refs").mkdir()
    assert errors(image_recipe(write, "refs")) == ["r.yaml:5:10: [] input.image: not a regular file: refs"]


@pytest.mark.parametrize("content", [b"hello, not an image", b"GIF89a\x01\x00\x01\x00", b"", b"\x89PNG\r\n"])
def test_not_a_png_or_jpeg_by_its_bytes(write: WriteRecipe, tmp_path: Path, content: bytes) -> None:
    (tmp_path / "fake.png").write_bytes(content)
    assert errors(image_recipe(write, "fake.png")) == [
        "r.yaml:5:10: [] input.image: fake.png is not a PNG or JPEG image (checked by its first bytes)"
    ]


def test_larger_than_10_mb(write: WriteRecipe, tmp_path: Path) -> None:
    limit = 10 * 1024 * 1024
    with (tmp_path / "big.png").open("wb") as f:
        f.write(png(400, 400))
        f.truncate(limit + 1)  # sparse: no 10 MB written
    assert errors(image_recipe(write, "big.png")) == [
        "r.yaml:5:10: [] input.image: big.png is 10,485,761 bytes, more than the 10 MB allowed"
    ]


def test_exactly_10_mb_is_allowed(write: WriteRecipe, tmp_path: Path) -> None:
    with (tmp_path / "big.png").open("wb") as f:
        f.write(png(400, 400))
        f.truncate(10 * 1024 * 1024)
    assert ok(image_recipe(write, "big.png")).jobs[0].units == 1


@pytest.mark.parametrize(("w", "h"), [(299, 400), (400, 299), (100, 100)])
def test_smaller_than_300_px(write: WriteRecipe, tmp_path: Path, w: int, h: int) -> None:
    (tmp_path / "small.png").write_bytes(png(w, h))
    assert errors(image_recipe(write, "small.png")) == [
        f"r.yaml:5:10: [] input.image: small.png is {w}x{h} px; width and height must be at least 300x300 px"
    ]


@pytest.mark.parametrize(("w", "h", "ratio"), [(1000, 399, "2.51"), (399, 1000, "0.40"), (760, 300, "2.53")])
def test_aspect_ratio_outside_1_to_2_5(write: WriteRecipe, tmp_path: Path, w: int, h: int, ratio: str) -> None:
    (tmp_path / "odd.png").write_bytes(png(w, h))
    assert errors(image_recipe(write, "odd.png")) == [
        f"r.yaml:5:10: [] input.image: odd.png has aspect ratio {w}:{h} ({ratio}); it must be between 0.4 and 2.5 "
        "(1:2.5 .. 2.5:1)"
    ]


@pytest.mark.parametrize(("w", "h"), [(300, 300), (750, 300), (300, 750), (1000, 400), (400, 1000)])
def test_limits_are_inclusive(write: WriteRecipe, tmp_path: Path, w: int, h: int) -> None:
    (tmp_path / "edge.png").write_bytes(png(w, h))
    p = ok(image_recipe(write, "edge.png"))
    found = p.render(p.jobs[0]).files["image"]
    assert (found.width, found.height) == (w, h)


def test_jpeg_header_is_read(write: WriteRecipe, tmp_path: Path) -> None:
    (tmp_path / "photo.jpg").write_bytes(jpeg(640, 480))
    p = ok(image_recipe(write, "photo.jpg"))
    found = p.render(p.jobs[0]).files["image"]
    assert (found.media_type, found.width, found.height) == ("image/jpeg", 640, 480)


def test_small_jpeg_is_refused(write: WriteRecipe, tmp_path: Path) -> None:
    (tmp_path / "thumb.jpg").write_bytes(jpeg(200, 150))
    assert errors(image_recipe(write, "thumb.jpg")) == [
        "r.yaml:5:10: [] input.image: thumb.jpg is 200x150 px; width and height must be at least 300x300 px"
    ]


def test_image_size_parsing() -> None:
    assert image_size(png(512, 300)) == ("image/png", 512, 300)
    assert image_size(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30) == ("image/png", None, None)  # no IHDR: size unknown
    assert image_size(jpeg(1024, 768)) == ("image/jpeg", 1024, 768)
    # fill bytes and a restart marker before the frame header are skipped
    data = jpeg(800, 600)
    assert image_size(data[:2] + b"\xff\xff\xff\xd0" + data[2:]) == ("image/jpeg", 800, 600)
    # a progressive JPEG (SOF2) too
    assert image_size(data.replace(b"\xff\xc0", b"\xff\xc2")) == ("image/jpeg", 800, 600)
    assert image_size(b"\xff\xd8\xff\xe0\x00\x10JFIF") == ("image/jpeg", None, None)  # truncated: size unknown
    assert image_size(b"RIFF....WEBP") is None


def test_check_path_reads_limits_from_the_schema(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(png(200, 200))
    found = check_path(tmp_path / "a.png", "a.png", FileLimits())  # no limits: anything PNG/JPEG goes
    assert (found.width, found.height, found.size) == (200, 200, len(png(200, 200)))


def data_uri(data: bytes, media: str = "image/png") -> str:
    return f"data:{media};base64,{base64.b64encode(data).decode()}"


def test_valid_data_uri_is_checked_and_hashed(write: WriteRecipe) -> None:
    data = png(320, 320)
    p = ok(image_recipe(write, data_uri(data)))
    found = p.render(p.jobs[0]).files["image"]
    assert found == LocalFile(None, hashlib.sha256(data).hexdigest(), len(data), "image/png", 320, 320)


@pytest.mark.parametrize(("uri", "message"), [
    ("data:image/png;base64,!!!notbase64", "data: URI holds invalid base64"),
    ("data:image/png,rawtext", "data: URI must be base64-encoded ('data:image/png;base64,...')"),
    ("data:text/plain;base64,aGVsbG8=", "the data: URI image is not a PNG or JPEG image (checked by its first bytes)"),
])
def test_invalid_data_uris(write: WriteRecipe, uri: str, message: str) -> None:
    assert errors(image_recipe(write, uri)) == [f"r.yaml:5:10: [] input.image: {message}"]


def test_data_uri_with_a_small_image(write: WriteRecipe) -> None:
    assert errors(image_recipe(write, data_uri(png(100, 100)))) == [
        "r.yaml:5:10: [] input.image: the data: URI image is 100x100 px; width and height must be at least "
        "300x300 px"
    ]


@pytest.mark.parametrize("url", ["https://example.com/ref.png", "http://example.com/no-such.gif",
                                 "HTTPS://EXAMPLE.COM/x"])
def test_urls_pass_through_unchecked(write: WriteRecipe, url: str) -> None:
    def never(*_args: object) -> LocalFile:
        raise AssertionError("a URL must not be checked as a file")

    p = plan(load_recipe(image_recipe(write, url)), check_file=never)
    rendered = p.render(p.jobs[0])
    assert rendered.request["image"] == url
    assert rendered.files == {}


def test_each_file_is_checked_once_per_plan(write: WriteRecipe, tmp_path: Path) -> None:
    (tmp_path / "ref.png").write_bytes(png(300, 300))
    calls: list[str] = []

    def counting(path: Path, shown: str, limits: FileLimits) -> LocalFile:
        calls.append(shown)
        return check_path(path, shown, limits)

    recipe = load_recipe(write(HEAD + "matrix:\n  s: [a, b, c, d]\ninput:\n  prompt: '{{ s }}'\n  image: ref.png\n"))
    assert len(plan(recipe, check_file=counting).jobs) == 4
    assert calls == ["ref.png"]


def test_content_key_follows_the_file_bytes_not_its_name(write: WriteRecipe, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(png(300, 300))
    key_a = ok(image_recipe(write, "a.png")).jobs[0].key
    assert ok(image_recipe(write, "a.png")).jobs[0].key == key_a  # stable

    os.rename(tmp_path / "a.png", tmp_path / "moved.png")  # same bytes, another name: same request paid for
    assert ok(image_recipe(write, "moved.png")).jobs[0].key == key_a

    (tmp_path / "moved.png").write_bytes(png(301, 300))  # other bytes: another job
    assert ok(image_recipe(write, "moved.png")).jobs[0].key != key_a


def test_a_local_file_and_its_data_uri_have_the_same_key(write: WriteRecipe, tmp_path: Path) -> None:
    data = png(300, 300)
    (tmp_path / "a.png").write_bytes(data)
    assert ok(image_recipe(write, "a.png")).jobs[0].key == ok(image_recipe(write, data_uri(data))).jobs[0].key


def test_two_values_naming_the_same_file_collapse(write: WriteRecipe, tmp_path: Path) -> None:
    (tmp_path / "refs").mkdir()
    (tmp_path / "refs/a.png").write_bytes(png(300, 300))
    p = ok(write(HEAD + "matrix:\n  ref: [refs/a.png, ./refs/a.png]\ninput:\n  prompt: x\n  image: '{{ ref }}'\n"))
    assert [j.id for j in p.jobs] == ["refs_a.png"]
    assert [str(w) for w in p.warnings] == [
        "r.yaml:4:21: [ref=./refs/a.png] identical to refs_a.png [ref=refs/a.png]: same request, run once"
    ]


def test_an_empty_file_name(write: WriteRecipe) -> None:
    assert errors(image_recipe(write, "")) == [
        "r.yaml:5:10: [] input.image: is an empty file name (write null, or leave the field out, for no file)"
    ]


def test_null_means_no_file(write: WriteRecipe) -> None:
    p = ok(write(HEAD + "input:\n  prompt: x\n  image: null\n"))
    assert p.render(p.jobs[0]).files == {}


# --- the whole image is read: a file cut short, or damaged, is refused before anything is spent ---

def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    out, i = [], 8
    while i < len(data):
        (length,) = struct.unpack(">I", data[i:i + 4])
        out.append((data[i + 4:i + 8], data[i + 8:i + 8 + length]))
        i += 12 + length
    return out


def _png_of(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"".join(struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d))
                                           for k, d in chunks)


GOOD = png(400, 300)
HEADER, IDAT, END = _chunks(GOOD)


@pytest.mark.parametrize(("data", "why"), [
    (GOOD[:20], "is a PNG cut short (its 'IHDR' chunk runs past the end of the file)"),
    (GOOD[:33], "is a PNG cut short (no IEND chunk: the file is incomplete)"),  # the whole IHDR, nothing after
    (GOOD[:-12], "is a PNG cut short (no IEND chunk: the file is incomplete)"),  # IEND gone
    (GOOD[:60], "is a PNG cut short (its 'IDAT' chunk runs past the end of the file)"),
    (GOOD[:45] + bytes([GOOD[45] ^ 1]) + GOOD[46:], "is a damaged PNG (the checksum of its 'IDAT' chunk is wrong)"),
    (_png_of([HEADER, (b"IDAT", IDAT[1][:-6]), END]),
     "is a PNG cut short (its compressed image data stops before the end)"),
    (_png_of([HEADER, (b"IDAT", zlib.compress(b"\x00" * 100)), END]),
     "is a damaged PNG (its image data is 100 bytes decoded; its size calls for 360,300)"),
    (_png_of([HEADER, (b"IDAT", zlib.compress((b"\x07" + b"\x00" * 1200) * 300)), END]),
     "is a damaged PNG (a scanline has an unknown filter type)"),
    (_png_of([HEADER, (b"IDAT", b"not zlib"), END]),
     "is a damaged PNG (its compressed image data cannot be decoded)"),
    (_png_of([HEADER, END]), "is a damaged PNG (it has no image data: no IDAT chunk)"),
    (_png_of([IDAT, HEADER, END]), "is a damaged PNG (it does not start with an IHDR chunk)"),
    (_png_of([(b"IHDR", struct.pack(">IIBBBBB", 400, 300, 3, 2, 0, 0, 0)), IDAT, END]),
     "is a damaged PNG (its header is invalid: bit depth 3, colour type 2)"),
    (_png_of([(b"IHDR", struct.pack(">IIBBBBB", 400, 300, 8, 3, 0, 0, 0)), IDAT, END]),
     "is a damaged PNG (a palette image without a PLTE chunk)"),
    (_png_of([(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 16, 6, 0, 0, 0)), IDAT, END]),
     "is a PNG whose image data would be 28,800,060,000 bytes decoded, more than the 536,870,912 this check reads"),
])
def test_a_png_cut_short_or_damaged_is_refused(write: WriteRecipe, tmp_path: Path, data: bytes, why: str) -> None:
    (tmp_path / "ref.png").write_bytes(data)
    assert errors(image_recipe(write, "ref.png")) == [f"r.yaml:5:10: [] input.image: ref.png {why}"]


JPEG = jpeg(400, 300)


@pytest.mark.parametrize(("data", "why"), [
    (JPEG[:20], "is a JPEG cut short (a segment runs past the end of the file)"),
    (JPEG[:-1], "is a JPEG cut short (its image data stops before the end)"),
    (JPEG[:-2], "is a JPEG cut short (its image data stops before the end)"),
    (JPEG[:JPEG.index(b"\xff\xda")] + b"\xff\xd9", "is a damaged JPEG (it has no image data: no scan)"),
    (JPEG[:2] + JPEG[JPEG.index(b"\xff\xc4"):], "is a damaged JPEG (image data before the frame header that gives "
                                                "its size)"),
    (JPEG.replace(struct.pack(">HH", 300, 400), struct.pack(">HH", 0, 400)),
     "is a JPEG whose frame header gives the size 400x0"),
])
def test_a_jpeg_cut_short_or_damaged_is_refused(write: WriteRecipe, tmp_path: Path, data: bytes, why: str) -> None:
    (tmp_path / "ref.jpg").write_bytes(data)
    assert errors(image_recipe(write, "ref.jpg")) == [f"r.yaml:5:10: [] input.image: ref.jpg {why}"]


@pytest.mark.parametrize("data", [png(333, 301, interlaced=True), png(400, 300, b"trailing bytes"), jpeg(401, 333),
                                  jpeg(400, 300)[:-2] + b"\xff\xff\xd9" + b"after the image"])
def test_whole_images_of_every_layout_pass(write: WriteRecipe, tmp_path: Path, data: bytes) -> None:
    (tmp_path / "ref.img").write_bytes(data)
    p = ok(image_recipe(write, "ref.img"))
    assert p.render(p.jobs[0]).files["image"].size == len(data)


def test_every_truncation_of_a_valid_image_is_refused() -> None:
    limits = FileLimits()
    for data in (png(300, 300), png(301, 307, interlaced=True), jpeg(300, 300)):
        for cut in range(len(data)):
            with pytest.raises(FileProblem):
                check_bytes(data[:cut], limits, "ref")


def test_a_data_uri_cut_short(write: WriteRecipe) -> None:
    assert errors(image_recipe(write, data_uri(GOOD[:-12]))) == [
        "r.yaml:5:10: [] input.image: the data: URI image is a PNG cut short (no IEND chunk: the file is incomplete)"
    ]


def test_a_fifo_named_as_an_image_is_not_read(write: WriteRecipe, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "ref.png")
    assert errors(image_recipe(write, "ref.png")) == [
        "r.yaml:5:10: [] input.image: not a regular file: ref.png (a pipe or a device?)"
    ]
