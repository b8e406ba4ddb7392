"""Benchmark of ``kling-pipeline plan`` on a large sweep (no network).

    python benchmarks/plan_bench.py              # N = 10k, 50k, 100k, each in fresh processes
    python benchmarks/plan_bench.py --jobs 100000 --one   # one run in this process

Each run writes a recipe of 4 axes (subject x style x aspect ratio x resolution;
the subject axis grows with N, style is mapping-valued) to a temporary directory
and runs the command line's ``plan`` on it, in process (``main(["plan", recipe])``:
load, expand, render, validate every request against the app schema, key, price,
and print the text summary).

The first table: a process that runs ``plan`` once, measured from inside — the wall
time of the whole process (interpreter start and imports included), its CPU time
(user + system: less sensitive to other load on the machine), the time of the
command alone, the peak RSS, the RSS before the command (interpreter and imports)
and the growth per job. The second table: the command itself, ``kling-pipeline plan
RECIPE``, measured from outside (wall, CPU and peak RSS of the child process).

Targets at 100,000 jobs on a 2-core machine (issue 16): the command in at most
1.0 s wall and 120 MB peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START = time.perf_counter()

SIZES = (10_000, 50_000, 100_000)
TARGET_WALL_S = 1.0
TARGET_RSS_MB = 120.0
STYLES = 25
RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3", "21:9")
RESOLUTIONS = ("1k", "2k")


def recipe_text(jobs: int) -> str:
    per_subject = STYLES * len(RATIOS) * len(RESOLUTIONS)
    if jobs % per_subject:
        raise SystemExit(f"--jobs must be a multiple of {per_subject}")
    subjects = ", ".join(f'"subject number {i}"' for i in range(jobs // per_subject))
    styles = "\n".join(f"    - {{name: style{i}, text: 'in the manner of style {i}, soft light'}}"
                       for i in range(STYLES))
    return f"""\
version: 1
name: bench
app: klingai/image-o1@0pbaxv40
vars:
  quality: sharp focus, high detail
matrix:
  subject: [{subjects}]
  style:
{styles}
  ratio: [{", ".join(f'"{r}"' for r in RATIOS)}]
  resolution: [{", ".join(RESOLUTIONS)}]
input:
  prompt: "A product photo of {{{{ subject }}}}, {{{{ style.text }}}}, {{{{ quality }}}}"
  aspect_ratio: "{{{{ ratio }}}}"
  resolution: "{{{{ resolution }}}}"
  n: 1
budget:
  max_usd: 5000
"""


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def one(jobs: int) -> dict[str, float]:
    """Run ``kling-pipeline plan`` on a recipe of ``jobs`` jobs in this process; return the figures."""
    import io

    from kling_pipeline.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(recipe_text(jobs), encoding="utf-8")
        out, err = io.StringIO(), io.StringIO()
        before = rss_mb()
        t0 = time.perf_counter()
        code = main(["plan", str(path)], out=out, err=err)  # as `kling-pipeline plan` does it
        elapsed = time.perf_counter() - t0
        text = out.getvalue()
        assert code == 0, (code, err.getvalue())
        assert f"  {jobs:,} jobs · " in text and text.count("\n") < 100, text
    peak = rss_mb()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"jobs": jobs, "plan_s": elapsed, "wall_s": time.perf_counter() - START, "rss_before_mb": before,
            "peak_rss_mb": peak, "bytes_per_job": (peak - before) * 1024 * 1024 / jobs,
            "cpu_s": usage.ru_utime + usage.ru_stime}


def command(jobs: int) -> dict[str, float]:
    """Run ``kling-pipeline plan RECIPE`` as a child process; its wall, CPU and peak RSS."""
    script = Path(sys.executable).with_name("kling-pipeline")
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "kling_pipeline"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(recipe_text(jobs), encoding="utf-8")
        t0 = time.perf_counter()
        child = subprocess.Popen([*argv, "plan", str(path)], stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"kling-pipeline plan exited with {os.waitstatus_to_exitcode(status)}")
    return {"jobs": jobs, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_mb": usage.ru_maxrss / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, action="append", help="job counts (default 10k, 50k, 100k)")
    parser.add_argument("--one", action="store_true", help="run one size in this process and print JSON")
    args = parser.parse_args()
    sizes = args.jobs or list(SIZES)
    if args.one:
        print(json.dumps(one(sizes[0])))
        return 0
    print(f"plan benchmark: 4 axes, kling-pipeline plan (validate + plan + summary); python "
          f"{sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(f"{'jobs':>8}  {'wall s':>7}  {'CPU s':>6}  {'plan s':>7}  {'RSS before':>10}  {'peak RSS':>9}  "
          f"{'per job':>8}")
    for n in sizes:
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, "--one", "--jobs", str(n)], capture_output=True, text=True,
                              check=True)
        r = json.loads(done.stdout)
        r["wall_s"] = time.perf_counter() - t0  # the whole process, as a user waits for it
        print(f"{n:>8,}  {r['wall_s']:>7.2f}  {r['cpu_s']:>6.2f}  {r['plan_s']:>7.2f}  {r['rss_before_mb']:>7.1f} MB  "
              f"{r['peak_rss_mb']:>6.1f} MB  {r['bytes_per_job']:>6.0f} B")
    print("the command itself, measured from outside:")
    print(f"{'jobs':>8}  {'wall s':>7}  {'CPU s':>6}  {'peak RSS':>9}")
    results = []
    for n in sizes:
        c = command(n)
        results.append(c)
        print(f"{n:>8,}  {c['wall_s']:>7.2f}  {c['cpu_s']:>6.2f}  {c['peak_rss_mb']:>6.1f} MB")
    big = max(results, key=lambda r: r["jobs"])
    ok = big["wall_s"] <= TARGET_WALL_S and big["peak_rss_mb"] <= TARGET_RSS_MB
    print(f"target at {big['jobs']:,} jobs: <= {TARGET_WALL_S:g} s wall and <= {TARGET_RSS_MB:g} MB peak RSS: "
          f"{'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
