"""Living within the service's rate limits: ``kling-pipeline run`` against emulators that enforce them.

Each scenario starts a fresh emulator process with a limit, runs the real command line
(``kling-pipeline run --json``) on a sweep of N distinct jobs at concurrency C with tasks
of L seconds, and reads the emulator's own counters (``GET /_emulator/limits``):

* ``bucket``  — runs in a token bucket of 100 a minute, burst 10;
                bound = (N - burst) / R + L;
* ``window``  — runs in a fixed window of 10 per 6 s (100 a minute on a scaled clock);
                bound = (ceil(N / W) - 1) * window + L;
* ``reads``   — N = 500 at C = 128, runs unlimited, reads at the published 1000 a minute
                (burst 100): every stream, task read and listing is a read; downloads are not.

Prints jobs done and failed, 429 answers against submits (all, and after the first), and
the run's wall (first submit to last job, from the run's own JSON events) against the
shape's bound. Targets (issue "Live within the service's limits"): 0 failed, 429s after
the first <= 2 % of submits, wall <= 1.03 x bound. Takes about 7 minutes.

    python benchmarks/limits_bench.py                 # all three
    python benchmarks/limits_bench.py --only window   # one
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KEY = "inf_benchmark"
APP = "klingai/image-o1@0pbaxv40"


@dataclass(frozen=True)
class Scenario:
    name: str
    jobs: int
    concurrency: int
    latency: float
    flags: tuple[str, ...]
    bound: float | None  # seconds; None: no closed-form bound (reads)
    what: str


def scenarios() -> list[Scenario]:
    n, c, lat = 300, 64, 1.0
    rate, burst = 100 / 60, 10
    window, per_window = 6.0, 10
    return [
        Scenario("bucket", n, c, lat, ("--runs-limit", "bucket:100/min", "--runs-burst", str(burst)),
                 (n - burst) / rate + lat, "runs: token bucket 100/min, burst 10"),
        Scenario("window", n, c, lat, ("--runs-limit", f"window:{per_window}/{window:g}s"),
                 (math.ceil(n / per_window) - 1) * window + lat, "runs: fixed window 10 per 6 s"),
        Scenario("reads", 500, 128, lat, ("--runs-limit", "off", "--reads-limit", "bucket:1000/min",
                                          "--reads-burst", "100"), None,
                 "reads: token bucket 1000/min, burst 100 (runs unlimited)"),
    ]


def start_emulator(latency: float, flags: tuple[str, ...]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "kling_pipeline.emulator", "--port", "0", "--latency",
                             str(latency), *flags], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("Emulator listening on "):
        proc.kill()
        raise SystemExit(f"the emulator did not start: {line!r}")
    return proc, line.split()[3]


def limit_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/_emulator/limits", timeout=10) as answer:
        data: dict[str, Any] = json.load(answer)["data"]["stats"]
        return data


def write_recipe(work: Path, n: int, c: int) -> Path:
    recipe = work / "limits.yaml"
    recipe.write_text(textwrap.dedent(f"""
        version: 1
        name: limits
        app: {APP}
        matrix:
          i: {list(range(n))}
        input:
          prompt: "rate limit benchmark image {{{{ i }}}}"
          aspect_ratio: "1:1"
        output:
          dir: out
        budget:
          max_usd: 100
        concurrency: {c}
    """))
    return recipe


def run(s: Scenario) -> dict[str, Any]:
    emulator, url = start_emulator(s.latency, s.flags)
    try:
        with tempfile.TemporaryDirectory(prefix="limits-bench-") as tmp:
            recipe = write_recipe(Path(tmp), s.jobs, s.concurrency)
            # a result cache of its own: results paid by an earlier trial must not be served to this one
            env = {**os.environ, "INFERENCE_API_KEY": KEY, "KLING_PIPELINE_CACHE": str(Path(tmp) / "cache")}
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "kling_pipeline", "run", str(recipe), "--base-url", url,
                                   "--json", "--no-report"], capture_output=True, text=True, env=env, check=False)
            whole = time.perf_counter() - t0
            events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        stats = limit_stats(url)
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)
    finished = [e for e in events if e["event"] == "finished"]
    submits = [e["time"] for e in events if e["event"] == "submitting"]
    kind = "reads" if s.name == "reads" else "runs"
    refused, allowed = stats[kind]["refused"], stats[kind]["allowed"]
    return {
        "exit": done.returncode,
        "done": sum(1 for e in finished if e["status"] == "completed"),
        "failed": sum(1 for e in finished if e["status"] not in ("completed",)),
        "kind": kind,
        "calls": allowed + refused,
        "refused": refused,
        "wall": (max(e["time"] for e in finished) - min(submits)) if finished and submits else math.nan,
        "whole": whole,
        "paced": sum(1 for e in events if e["event"] == "pacing" and e.get("paced_by_service")),
        "stderr": done.stderr[-2000:] if done.returncode else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=[s.name for s in scenarios()], action="append")
    args = parser.parse_args()
    chosen = [s for s in scenarios() if not args.only or s.name in args.only]
    ok = True
    for s in chosen:
        print(f"== {s.name}: N={s.jobs} C={s.concurrency} L={s.latency:g}s, {s.what}", flush=True)
        r = run(s)
        after_first = max(0, r["refused"] - 1)
        share = after_first / max(1, r["calls"])
        line = (f"   exit {r['exit']} · {r['done']} done · {r['failed']} failed · {r['kind']}: {r['calls']} calls, "
                f"{r['refused']} answered 429 ({share:.1%} after the first) · wall {r['wall']:.1f} s "
                f"(whole command {r['whole']:.1f} s)")
        if s.bound is not None:
            line += f" · bound {s.bound:.1f} s · ratio {r['wall'] / s.bound:.3f}"
        print(line, flush=True)
        met = r["failed"] == 0 and share <= 0.02 and (s.bound is None or r["wall"] <= 1.03 * s.bound)
        ok = ok and met
        verdict = "met" if met else "NOT met"
        print(f"   targets (0 failed, 429s after the first <= 2 %, wall <= 1.03 x bound): {verdict}")
        if r["stderr"]:
            print(r["stderr"])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
