"""Thumbnails: one small JPEG per image content, named by the image's sha256, made once.

``thumbs/ab/ab12….jpg`` exists → reused as is (a re-run never redoes it). An image that cannot be
made into one (not PNG/JPEG/WebP, damaged, too large) gets ``ab12….txt`` saying why, so it is not
tried again either, and its cell shows a placeholder that still links to the file.

Bounded: files over ``MAX_FILE_BYTES`` or images over ``MAX_PIXELS`` are refused before decoding;
JPEGs decode straight at a reduced scale (``draft``); and the images being decoded at once (by the
``workers`` threads) hold at most ``DECODE_BUDGET`` bytes together (Pillow keeps 4 bytes a pixel),
so a 2k output (~17 MB) decodes beside another, the largest image allowed alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ...store.atomic import write_atomic
from .model import ImageRef

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = [
    "DECODE_BUDGET",
    "MAX_FILE_BYTES",
    "MAX_PIXELS",
    "THUMB_BOX",
    "DecodeBudget",
    "ThumbStats",
    "Thumbnails",
    "Unreadable",
    "make_thumbnail",
]

THUMB_BOX = 256  # pixels, the longer side (shown at 176 CSS pixels: sharp on a 1.5x screen)
QUALITY = 80
MAX_FILE_BYTES = 64 << 20  # a 2k PNG is under 10 MB
MAX_PIXELS = 12_000_000  # 4000 x 3000; the app's largest output (2k) has ~4.2 million
DECODE_BUDGET = 4 * MAX_PIXELS  # bytes of decoded pixels at once, over all the workers
FORMATS = ("PNG", "JPEG", "WEBP")
BACKGROUND = (233, 236, 240)  # under transparent pixels: the page's thumbnail background
_CHUNK = 1 << 20


class DecodeBudget:
    """Bytes that decoding may hold at once: ``take(n)`` waits until ``n`` are free."""

    def __init__(self, total: int) -> None:
        self.total = self.free = total
        self._cv = threading.Condition()

    @contextlib.contextmanager
    def take(self, amount: int) -> Iterator[None]:
        amount = min(amount, self.total)
        with self._cv:
            self._cv.wait_for(lambda: self.free >= amount)
            self.free -= amount
        try:
            yield
        finally:
            with self._cv:
                self.free += amount
                self._cv.notify_all()


class Unreadable(Exception):
    """Why an image has no thumbnail (the message is shown on the page)."""


@dataclass(frozen=True, slots=True)
class ThumbStats:
    made: int = 0
    reused: int = 0
    unreadable: int = 0
    seconds: float = 0.0  # spent making new ones


def make_thumbnail(source: Path, target: Path, budget: DecodeBudget | None = None) -> None:
    """Write a JPEG of ``source`` fitting ``THUMB_BOX`` to ``target`` (temp name, then renamed).
    Raises ``Unreadable`` for anything that is not a usable image. ``budget``: shared with the other
    threads making thumbnails, so that together they never decode more than it allows."""
    from PIL import Image, ImageOps, UnidentifiedImageError  # only when a thumbnail is made: not for every command

    size = source.stat().st_size
    if size > MAX_FILE_BYTES:
        raise Unreadable(f"too large to preview ({size / (1 << 20):.0f} MB)")
    try:
        with _open(source) as im:
            width, height = im.size
            if width * height > MAX_PIXELS:
                raise Unreadable(f"too large to preview ({width} x {height} pixels)")
            im.draft("RGB", (THUMB_BOX, THUMB_BOX))  # JPEG: decode at 1/2 .. 1/8 scale (its size says so)
            with (budget or DecodeBudget(DECODE_BUDGET)).take(4 * im.size[0] * im.size[1]):
                im.thumbnail((THUMB_BOX, THUMB_BOX), Image.Resampling.BICUBIC, reducing_gap=2.0)
                small = _flatten(ImageOps.exif_transpose(im))  # a camera's rotation, as viewers show it
    except Unreadable:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise Unreadable(f"too large to preview (over {MAX_PIXELS:,} pixels)") from None
    except UnidentifiedImageError:
        raise Unreadable("not an image the report can preview (PNG, JPEG or WebP)") from None
    except Exception as exc:  # a damaged file: Pillow raises many kinds (OSError, SyntaxError, ValueError...)
        raise Unreadable(f"damaged image ({type(exc).__name__})") from None
    encoded = io.BytesIO()
    small.save(encoded, "JPEG", quality=QUALITY)
    write_atomic(target, encoded.getvalue())


_OPENING = threading.Lock()


def _open(source: Path) -> PILImage:
    """Open (read the header of) an image. Pillow warns about an image over its own pixel limit and
    refuses one over twice that; here both are refused, without a warning printed. (The warnings
    filter is process-wide, hence the lock: a thread never sees another's filter.)"""
    from PIL import Image

    with _OPENING, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(source, formats=FORMATS)


def _flatten(im: PILImage) -> PILImage:
    """RGB, with transparent pixels over the page's thumbnail background."""
    from PIL import Image

    if im.mode in ("P", "PA", "LA", "La", "RGBa") or (im.mode != "RGBA" and "transparency" in im.info):
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        base = Image.new("RGB", im.size, BACKGROUND)
        base.paste(im, mask=im.getchannel("A"))
        return base
    return im.convert("RGB")


class Thumbnails:
    """Thumbnails of an output directory's images in ``directory`` (``<pages>/thumbs``)."""

    def __init__(self, directory: Path, out_dir: Path, workers: int | None = None) -> None:
        self.directory = directory
        self._root = os.fspath(directory)
        self.out_dir = out_dir
        self.workers = workers or max(1, min(2, os.cpu_count() or 1))
        self._budget = DecodeBudget(DECODE_BUDGET)
        self._pool: ThreadPoolExecutor | None = None
        self._made = self._reused = self._unreadable = 0
        self._seconds = 0.0

    @property
    def stats(self) -> ThumbStats:
        return ThumbStats(self._made, self._reused, self._unreadable, round(self._seconds, 3))

    def __enter__(self) -> Thumbnails:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def ensure(self, images: Sequence[ImageRef]) -> list[ImageRef]:
        """The same images, each shown one with its ``thumb`` (or why it has none): made when new."""
        result = list(images)
        todo: list[int] = []
        copies: dict[int, int] = {}  # an image with the content of an earlier one in ``todo``
        first: dict[str, int] = {}
        for i, image in enumerate(images):
            if image.shown and image.media == "image":  # (a video, an audio file or a text is shown as it is)
                found = self._existing(image) if image.sha256 is not None else None
                if found is not None:
                    result[i] = self._count(*found)
                elif image.sha256 is not None and image.sha256 in first:
                    copies[i] = first[image.sha256]
                else:
                    first[image.sha256 or ""] = i
                    todo.append(i)
        if todo:
            started = time.perf_counter()
            if self.workers > 1 and len(todo) > 1:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="kling-pipeline-thumbs")
                made = list(self._pool.map(self._make, [images[i] for i in todo]))
            else:
                made = [self._make(images[i]) for i in todo]
            self._seconds += time.perf_counter() - started
            for i, outcome in zip(todo, made, strict=True):
                result[i] = self._count(*outcome)
        for i, source in copies.items():
            done = result[source]
            result[i] = self._count(replace(images[i], sha256=done.sha256, thumb=done.thumb,
                                            unreadable=done.unreadable), False)
        return result

    def _count(self, image: ImageRef, made: bool) -> ImageRef:
        if image.unreadable is not None:
            self._unreadable += 1
        elif made:
            self._made += 1
        else:
            self._reused += 1
        return image

    def _names(self, sha: str) -> tuple[str, str, str]:
        rel = f"{sha[:2]}/{sha}"
        return f"{rel}.jpg", f"{self._root}/{rel}.jpg", f"{self._root}/{rel}.txt"

    def _existing(self, image: ImageRef) -> tuple[ImageRef, bool] | None:
        """A thumbnail (or the reason there is none) made before: (image, False); else None."""
        assert image.sha256 is not None
        rel, jpg, txt = self._names(image.sha256)
        if os.path.isfile(jpg):
            return image.with_thumbnail(rel), False
        if os.path.isfile(txt):
            return replace(image, unreadable=_read_reason(Path(txt))), False
        return None

    def _make(self, image: ImageRef) -> tuple[ImageRef, bool]:
        """Runs in a worker thread: touches only its own files, counts nothing."""
        source = self.out_dir / image.path
        try:
            if image.sha256 is None:
                image = replace(image, sha256=_hash_file(source))
                found = self._existing(image)
                if found is not None:
                    return found
            assert image.sha256 is not None
            rel, jpg, txt = self._names(image.sha256)
            try:
                make_thumbnail(source, Path(jpg), self._budget)
            except Unreadable as why:
                _write_reason(Path(txt), str(why))
                raise
        except Unreadable as why:
            return replace(image, unreadable=str(why)), True
        except OSError as exc:  # not remembered: it may be readable next time
            return replace(image, unreadable=f"cannot be read ({exc.strerror or type(exc).__name__})"), True
        return image.with_thumbnail(rel), True


def _hash_file(path: Path) -> str:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise Unreadable(f"too large to preview ({size / (1 << 20):.0f} MB)")
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _read_reason(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[:200].strip() or "unreadable"
    except OSError:
        return "unreadable"


def _write_reason(path: Path, reason: str) -> None:
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(reason + "\n", encoding="utf-8")
