"""Thumbnails made once per image content (broken and huge images get a placeholder, never a crash),
pages rewritten only when what they show changed, and manifests that are only data."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from tests_support import png_bytes

from kling_pipeline.core.planning import Plan, plan_file
from kling_pipeline.store.journal import ManifestError
from kling_pipeline.views.report import THUMB_BOX, make_thumbnail, write_report
from kling_pipeline.views.report.thumbs import DECODE_BUDGET, MAX_PIXELS, DecodeBudget, Unreadable

from .site import read_site, target
from .test_report_states import records_for, write_manifest

TWELVE = """
version: 1
name: twelve
app: klingai/image-o1@0pbaxv40
matrix:
  subject: [a, b, c, d, e, f]
  style: [x, y]
input:
  prompt: "a {{ subject }} in {{ style }}"
output:
  dir: out
"""


@pytest.fixture
def plan(recipe_file: Callable[..., Path]) -> Plan:
    return plan_file(recipe_file(TWELVE))


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_png(width: int, height: int) -> bytes:
    """A PNG header claiming ``width`` x ``height`` pixels, with almost no data behind it."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def completed(plan: Plan, images: dict[int, bytes]) -> list[dict[str, Any]]:
    """Records of the jobs ``images`` names, completed with those bytes (sha256 and size recorded)."""
    records = []
    for i, data in images.items():
        job = plan.jobs[i]
        (plan.output_dir / f"{job.output_name}.png").parent.mkdir(parents=True, exist_ok=True)
        (plan.output_dir / f"{job.output_name}.png").write_bytes(data)
        records += records_for(plan, job, "completed", sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    return records


def stamps(directory: Path) -> dict[str, int]:
    """Every file under ``directory`` by relative path, with its inode and modification time."""
    return {str(p.relative_to(directory)): p.stat().st_mtime_ns ^ p.stat().st_ino
            for p in directory.rglob("*") if p.is_file()}


def test_a_thumbnail_fits_the_box_and_keeps_the_aspect_ratio(tmp_path: Path) -> None:
    source, thumb = tmp_path / "wide.png", tmp_path / "t.jpg"
    source.write_bytes(png_bytes(1024, 256, (250, 10, 10)))
    make_thumbnail(source, thumb)
    with Image.open(thumb) as im:
        assert (im.format, im.size) == ("JPEG", (THUMB_BOX, THUMB_BOX // 4))
        assert im.getpixel((10, 10))[0] > 200  # still red
    turned = io.BytesIO()  # a camera's JPEG, stored sideways with an orientation tag saying so
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (80, 40), (10, 200, 10)).save(turned, "JPEG", exif=exif.tobytes())
    source.write_bytes(turned.getvalue())
    make_thumbnail(source, thumb)
    with Image.open(thumb) as im:
        assert im.size == (40, 80)
    transparent = io.BytesIO()
    Image.new("RGBA", (40, 40), (0, 0, 0, 0)).save(transparent, "PNG")
    source.write_bytes(transparent.getvalue())
    make_thumbnail(source, thumb)
    with Image.open(thumb) as im:
        assert im.size == (40, 40) and all(abs(a - b) < 8 for a, b in zip(im.getpixel((5, 5)), (233, 236, 240),
                                                                        strict=True))


@pytest.mark.parametrize(("data", "why"), [
    (huge_png(20_000, 20_000), "too large to preview (over 12,000,000 pixels)"),  # past Pillow's own limit
    (huge_png(10_000, 10_000), "too large to preview (over 12,000,000 pixels)"),  # past its warning
    (huge_png(4_000, 3_001), "too large to preview (4000 x 3001 pixels)"),
    (png_bytes(64, 64)[:-40], "damaged image (OSError)"),
    (b"<svg onload=alert(1)>", "not an image the report can preview (PNG, JPEG or WebP)"),
    (b"", "not an image the report can preview (PNG, JPEG or WebP)"),
])
def test_what_cannot_be_previewed_is_refused_before_decoding_with_a_reason(tmp_path: Path, data: bytes,
                                                                           why: str) -> None:
    source = tmp_path / "x.png"
    source.write_bytes(data)
    with pytest.raises(Unreadable) as info:
        make_thumbnail(source, tmp_path / "t.jpg")
    assert str(info.value) == why
    assert not (tmp_path / "t.jpg").exists() and [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_decoding_never_holds_more_than_the_budget_at_once() -> None:
    assert DECODE_BUDGET == 4 * MAX_PIXELS  # the largest image allowed decodes alone
    budget, order = DecodeBudget(100), []

    def second() -> None:
        with budget.take(60):
            order.append("second in")

    with budget.take(60):
        order.append("first in")
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.2)
        assert order == ["first in"] and budget.free == 40  # the second waits
    thread.join(5)
    assert order == ["first in", "second in"] and budget.free == 100
    with budget.take(10**9):  # more than the whole budget: takes it all
        assert budget.free == 0


def test_broken_images_get_a_placeholder_linking_to_the_file_and_are_not_tried_again(plan: Plan) -> None:
    out = plan.output_dir
    write_manifest(out, completed(plan, {0: png_bytes(8, 8), 1: huge_png(20_000, 20_000), 2: b"not an image"}))
    result = write_report(out, plan)
    assert (result.thumbs.made, result.thumbs.reused, result.thumbs.unreadable) == (1, 0, 2)
    site = read_site(result.index)
    page = site.grid[0].path
    for job, why in ((plan.jobs[1], "too large to preview (over 12,000,000 pixels)"),
                     (plan.jobs[2], "not an image the report can preview (PNG, JPEG or WebP)")):
        placeholder = site.job(job.id).one("a.placeholder")
        assert placeholder.text == f"no preview: {why}"
        assert target(page, placeholder.get("href")) == out / f"{job.output_name}.png"
        sha = hashlib.sha256((out / f"{job.output_name}.png").read_bytes()).hexdigest()
        assert (out / "report" / "thumbs" / sha[:2] / f"{sha}.txt").read_text(encoding="utf-8") == why + "\n"
    again = write_report(out, plan)
    assert (again.thumbs.made, again.thumbs.reused, again.thumbs.unreadable) == (0, 1, 2)
    assert read_site(again.index).job(plan.jobs[1].id).one("a.placeholder").text == (
        "no preview: too large to preview (over 12,000,000 pixels)")


def test_one_thumbnail_per_content_named_by_its_sha256(plan: Plan) -> None:
    same = png_bytes(8, 8, (1, 2, 3))
    out = plan.output_dir
    write_manifest(out, completed(plan, {0: same, 1: same, 2: png_bytes(8, 8, (3, 2, 1))}))
    result = write_report(out, plan)
    assert (result.thumbs.made, result.thumbs.reused) == (2, 1)
    site = read_site(result.index)
    srcs = [site.job(plan.jobs[i].id).one("img").get("src") for i in range(3)]
    sha = hashlib.sha256(same).hexdigest()
    assert srcs[0] == srcs[1] == f"./thumbs/{sha[:2]}/{sha}.jpg" != srcs[2]
    assert sorted(p.name for p in (out / "report" / "thumbs").rglob("*.jpg")) == sorted(
        {f"{hashlib.sha256(d).hexdigest()}.jpg" for d in (same, png_bytes(8, 8, (3, 2, 1)))})


def test_a_recorded_sha256_that_does_not_match_the_file_is_not_trusted(plan: Plan) -> None:
    out = plan.output_dir
    data = png_bytes(8, 8, (9, 9, 9))
    (out / f"{plan.jobs[0].output_name}.png").parent.mkdir(parents=True, exist_ok=True)
    (out / f"{plan.jobs[0].output_name}.png").write_bytes(data)
    write_manifest(out, records_for(plan, plan.jobs[0], "completed", sha256="../../" + "a" * 58))
    site = read_site(write_report(out, plan).index)
    sha = hashlib.sha256(data).hexdigest()
    assert site.job(plan.jobs[0].id).one("img").get("src") == f"./thumbs/{sha[:2]}/{sha}.jpg"


def test_a_second_report_writes_nothing_when_nothing_changed(plan: Plan) -> None:
    out = plan.output_dir
    write_manifest(out, completed(plan, {i: png_bytes(8, 8, (i, 0, 0)) for i in range(6)}))
    first = write_report(out, plan, page_jobs=4)
    before = stamps(out)
    again = write_report(out, plan, page_jobs=4)
    assert (again.pages, again.written, again.unchanged, again.removed) == (first.pages, 0, first.pages, 0)
    assert (again.thumbs.made, again.thumbs.reused) == (0, 6)
    assert stamps(out) == before  # not one byte rewritten, the index included


def test_more_jobs_done_rewrite_only_the_pages_that_show_them(plan: Plan) -> None:
    out = plan.output_dir
    done = {i: png_bytes(8, 8, (i, 0, 0)) for i in range(8)}
    records = completed(plan, done) + [r for i in (8, 9) for r in records_for(plan, plan.jobs[i], "submitted")]
    write_manifest(out, records)
    first = read_site(write_report(out, plan, page_jobs=4).index)
    assert [len(p.root.all("div.job")) for p in first.grid] == [4, 4, 4]
    assert [p.path.name for p in first.problems] == ["problems-0001.html"]  # the two in flight
    before = stamps(out)
    # jobs 8 and 9 (subject e, both styles: the third page) complete
    later = completed(plan, {8: png_bytes(8, 8, (8, 0, 0)), 9: png_bytes(8, 8, (9, 0, 0))})
    with (out / "manifest.jsonl").open("a", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in later if r["t"] == "done")
    result = write_report(out, plan, page_jobs=4)
    after = stamps(out)
    changed = {name for name in before.keys() & after.keys() if before[name] != after[name]}
    assert changed == {"report/grid-0003.html", "report.html", "manifest.jsonl"}
    assert set(after) - set(before) == {f"{plan.jobs[i].output_name}.png" for i in (8, 9)} | {
        f"report/thumbs/{h[:2]}/{h}.jpg" for h in (hashlib.sha256(png_bytes(8, 8, (i, 0, 0))).hexdigest()
                                                   for i in (8, 9))}
    assert set(before) - set(after) == {"report/problems-0001.html"}  # nothing left to list
    assert (result.written, result.unchanged, result.removed, result.thumbs.made) == (1, 2, 1, 2)


def test_a_manifest_is_only_data(plan: Plan) -> None:
    out = plan.output_dir
    records = completed(plan, {0: png_bytes(8, 8)})
    records += [{"t": "accepted", "key": plan.jobs[1].key},  # no task: the store cannot fold it
                {"t": "done", "key": ["not", "a", "key"]}, {"t": "upload", "sha256": "x", "uri": "y"}, [1, 2],
                {"t": "done", "key": plan.jobs[2].key, "status": "completed", "outputs": [{"path": 7}, "x"]}]
    write_manifest(out, records)
    with (out / "manifest.jsonl").open("a", encoding="utf-8") as fh:
        fh.write('{"t": "done", "key": "cut short by kill -9')  # no newline: ignored, as a run ignores it
    site = read_site(write_report(out, plan).index)
    assert [d.get("data-status") for d in site.jobs()][:3] == ["completed", "not_run", "completed"]
    assert site.job(plan.jobs[2].id).one("span.placeholder").text == "done"  # no usable output recorded


def test_a_corrupt_manifest_line_is_an_error_naming_the_line(plan: Plan) -> None:
    out = plan.output_dir
    write_manifest(out, records_for(plan, plan.jobs[0], "failed"))
    with (out / "manifest.jsonl").open("a", encoding="utf-8") as fh:
        fh.write("{not json\n")
    with pytest.raises(ManifestError) as info:
        write_report(out, plan)
    assert str(info.value) == (f"{out / 'manifest.jsonl'}:5: corrupt manifest line (not JSON); the file was changed "
                               "by hand? Move it away to start over (spend recorded in it is then forgotten)")
    assert sorted(p.name for p in out.iterdir()) == ["manifest.jsonl"]  # the work directory is gone
