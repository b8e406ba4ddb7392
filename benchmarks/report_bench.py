"""Benchmark of ``kling-pipeline report`` on synthetic sweeps of 20,000 and 100,000 images.

    python benchmarks/report_bench.py                    # N = 20k and 100k, each in a fresh directory
    python benchmarks/report_bench.py --sizes 20000 --keep /tmp/bench   # keep the output directories

For each N it writes an output directory as a run leaves it (a manifest of run/intent/accepted/done
records with realistic inputs, one real PNG per completed job, each different so each has its own
thumbnail): subject (N/200 values) x style (20) x ratio (10); 97% done, 2% failed, 1% in flight.
Then it runs the real command line, each time in a fresh process, measured from outside (wall time,
peak RSS from ``wait4``, the process started by a small launcher so that it inherits nothing):

1. the first report (every thumbnail made, every page written);
2. the same again (nothing changed: nothing may be written);
3. after the in-flight jobs completed (their images written, ``done`` appended): incremental;
4. after deleting the pages (thumbnails kept): pages only, so 1 minus 4 is the thumbnails' time.

It prints the page bound, page sizes (index, grid pages, problem lists), and the load time of
pages in headless Chromium (index, first / middle / last grid page, first problem list): the time
to the load event and until the thumbnails in the first screen are decoded. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STYLES = 20
RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3", "21:9", "5:4", "4:5")
PRICE = 2_800_000


def png(seed: int) -> bytes:
    """An 8x8 RGB PNG whose pixels depend on ``seed`` (so every image has its own sha256)."""
    rgb = bytes(((seed * 37) % 256, (seed // 256 * 91) % 256, (seed // 65536 * 53 + seed) % 256))
    raw = (b"\x00" + rgb * 8) * 8

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b"")


def combos(n: int) -> list[tuple[int, str, str, str]]:
    subjects = max(1, n // (STYLES * len(RATIOS)))
    out: list[tuple[int, str, str, str]] = []
    for s in range(subjects):
        for st in range(STYLES):
            for r in RATIOS:
                out.append((len(out), f"subject {s:05d}", f"style {st:02d}", r))
    return out[:n]


def outcome(i: int) -> str:
    return "failed" if i % 50 == 7 else "in_flight" if i % 100 == 13 else "completed"


def write_sweep(out: Path, n: int) -> list[dict[str, Any]]:
    """The output directory of an N-job sweep; returns the done records the in-flight jobs will get."""
    out.mkdir(parents=True)
    later = []
    with (out / "manifest.jsonl").open("w", encoding="utf-8") as fh:
        fh.write(json.dumps({"t": "run", "run": "bench", "recipe": "bench.yaml", "app": "klingai/image-o1@0pbaxv40",
                             "cap_microcents": PRICE * n, "tool": "kling-pipeline", "at": time.time(),
                             "mode": "run"}) + "\n")
        for i, subject, style, ratio in combos(n):
            key = hashlib.sha256(f"bench {i}".encode()).hexdigest()
            job = f"{subject.replace(' ', '_')}-{style.replace(' ', '_')}-{ratio.replace(':', '_')}"
            fh.write(json.dumps({
                "t": "intent", "key": key, "job": job, "attempt": 1, "run": "bench", "app": "klingai/image-o1@0pbaxv40",
                "input": {"prompt": f"A {subject} on a wooden table, {style}, soft studio lighting, highly detailed",
                          "aspect_ratio": ratio, "resolution": "1k", "n": 1},
                "files": {}, "reserved_microcents": PRICE, "units": 1, "output": f"{job}_{key[:10]}_0",
                "combination": {"subject": subject, "style": style, "ratio": ratio}, "repeat_index": 0,
                "webhook": None, "at": time.time()}) + "\n")
            fh.write(json.dumps({"t": "accepted", "key": key, "task": f"task{i:08d}", "at": time.time()}) + "\n")
            done = done_record(out, i, key, job, "completed" if outcome(i) != "failed" else "failed")
            if outcome(i) == "in_flight":
                later.append(done)
            else:
                write_done(out, done, fh)
    return later


def done_record(out: Path, i: int, key: str, job: str, status: str) -> dict[str, Any]:
    record: dict[str, Any] = {"t": "done", "key": key, "job": job, "task": f"task{i:08d}", "status": status,
                              "billed_microcents": PRICE if status == "completed" else 0, "outputs": [],
                              "error": None if status == "completed" else "Kling task failed: provider error",
                              "at": time.time()}
    if status == "completed":
        data = png(i)
        name = f"{job}_{key[:10]}_0.png"
        record["outputs"] = [{"path": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                              "content_type": "image/png", "sidecar": name + ".json"}]
        record["_bytes"] = data
    return record


def write_done(out: Path, record: dict[str, Any], fh: Any) -> None:
    """The image first, then its record (as a run does)."""
    data = record.pop("_bytes", None)
    if data is not None:
        (out / record["outputs"][0]["path"]).write_bytes(data)
    fh.write(json.dumps(record) + "\n")


def complete(out: Path, records: list[dict[str, Any]]) -> None:
    with (out / "manifest.jsonl").open("a", encoding="utf-8") as fh:
        for record in records:
            write_done(out, record, fh)


# Peak RSS is measured with wait4 on a command started by this small process: a process forked from
# the benchmark itself would start with (and keep as its peak) the benchmark's own memory.
LAUNCHER = r"""
import json, os, subprocess, sys, time
for line in sys.stdin:
    started = time.perf_counter()
    proc = subprocess.Popen(json.loads(line), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    text = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    print(json.dumps([os.waitstatus_to_exitcode(status), time.perf_counter() - started, usage.ru_maxrss, text]),
          flush=True)
"""


class Launcher:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-S", "-c", LAUNCHER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def run(self, argv: list[str]) -> tuple[int, float, float, str]:
        """Exit code, wall seconds, peak RSS (MB) and output of ``argv``, run in a fresh process."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(argv) + "\n")
        self.proc.stdin.flush()
        code, wall, maxrss, text = json.loads(self.proc.stdout.readline())
        return code, wall, maxrss / 1024, text


def command() -> list[str]:
    exe = ROOT / ".venv" / "bin" / "kling-pipeline"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "kling_pipeline"]


def report(launcher: Launcher, out: Path) -> tuple[float, float, str]:
    """``kling-pipeline report OUT`` in a fresh process: wall seconds, peak RSS (MB), its last line."""
    code, wall, rss, text = launcher.run([*command(), "report", str(out)])
    if code != 0:
        raise SystemExit(f"report failed ({code}):\n{text}")
    return wall, rss, text.strip().splitlines()[-1].strip()


def sizes(directory: Path, prefix: str) -> list[int]:
    return sorted(p.stat().st_size for p in directory.glob(f"{prefix}-*.html"))


def kb(n: float) -> str:
    return f"{n / 1024:.0f} KB"


def browse(index: Path, pages: list[Path]) -> list[tuple[str, float, float, int]]:
    """(page, seconds to the load event, seconds until the first screen's thumbnails are decoded, images)."""
    sys.path.insert(0, str(ROOT))
    from tests.report.browser import chromium, missing

    why = missing()
    if why is not None:
        print(f"  browser: skipped ({why})")
        return []
    from selenium.webdriver.support.ui import WebDriverWait

    visible = """
        const imgs = [...document.images].filter(i => { const r = i.getBoundingClientRect();
            return r.bottom > 0 && r.top < innerHeight && r.right > 0 && r.left < innerWidth; });
        return imgs.every(i => i.complete && i.naturalWidth > 0) ? {shown: imgs.length} : null;"""
    results = []
    with tempfile.TemporaryDirectory() as profile, chromium(Path(profile)) as driver:
        driver.get(index.as_uri())  # a first load starts the browser's own machinery
        for page in [index, *pages]:
            driver.get("about:blank")
            started = time.perf_counter()
            driver.get(page.as_uri())  # returns at the load event
            loaded = time.perf_counter() - started
            shown = WebDriverWait(driver, 20, poll_frequency=0.01).until(lambda d: d.execute_script(visible))
            ready = time.perf_counter() - started
            results.append((page.name, loaded, ready, int(shown["shown"])))
    return results


def bench(launcher: Launcher, n: int, keep: Path | None, browser: bool) -> None:
    base = Path(tempfile.mkdtemp(prefix="report-bench-", dir=keep))
    out = base / "out"
    t = time.perf_counter()
    later = write_sweep(out, n)
    images = n - n // 50 - len(later)
    megabytes = (out / "manifest.jsonl").stat().st_size / 2**20
    print(f"\nN = {n:,} jobs: {images:,} images on disk, {len(later)} in flight, "
          f"manifest {megabytes:.0f} MB (written in {time.perf_counter() - t:.1f} s)")
    first = report(launcher, out)
    second = report(launcher, out)
    complete(out, later)
    third = report(launcher, out)
    for page in (out / "report").glob("*.html"):
        page.unlink()
    fourth = report(launcher, out)
    for label, (wall, rss, line) in (("first report", first), ("unchanged", second),
                                     (f"{len(later)} more done", third), ("pages only", fourth)):
        print(f"  {label:<16} {wall:6.1f} s  peak RSS {rss:6.1f} MB   {line}")
    thumbs = first[0] - fourth[0]
    print(f"  thumbnails: {thumbs:.1f} s for {images:,} ({thumbs / images * 1e3:.2f} ms each)")
    pages = out / "report"
    grid = sizes(pages, "grid")
    problems = sizes(pages, "problems")
    index = (out / "report.html").stat().st_size
    print(f"  index {kb(index)}; {len(grid)} grid pages: median {kb(statistics.median(grid))}, max {kb(grid[-1])}; "
          f"{len(problems)} problem pages: max {kb(problems[-1]) if problems else '-'}")
    if browser:
        names = sorted(pages.glob("grid-*.html"))
        chosen = [names[0], names[len(names) // 2], names[-1], *sorted(pages.glob("problems-*.html"))[:1]]
        for name, loaded, ready, shown in browse(out / "report.html", chosen):
            print(f"  chromium {name:<18} load {loaded:5.2f} s, first screen's {shown} thumbnails {ready:5.2f} s")
    if keep is None:
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--keep", type=Path, help="write the sweeps under this directory and keep them")
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    launcher = Launcher()  # first, while this process is small
    sys.path.insert(0, str(ROOT))
    from kling_pipeline.views.report import COLS_PER_PAGE, LIST_JOBS, PAGE_JOBS

    _, _, baseline, _ = launcher.run([*command(), "report", "--help"])
    print(f"bound: at most {PAGE_JOBS} jobs ({COLS_PER_PAGE} columns) per grid page, {LIST_JOBS} per list page; "
          f"peak RSS of `kling-pipeline report --help` (imports, no work): {baseline:.1f} MB")
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    for n in args.sizes:
        bench(launcher, n, args.keep, not args.no_browser)


if __name__ == "__main__":
    main()
