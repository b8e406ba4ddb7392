"""Resume after kill -9: how long the second run takes, and that every job is paid once.

The scenario of the hardening issue: an 80-job sweep at concurrency 16, tasks of 1 s,
``kill -9`` 2.5 s after the start, then the same command again. Each trial uses a fresh
emulator process (rate limits off: this measures resuming, not pacing) and a fresh
output directory; ``--lag`` gives the emulator's task listing an index lag (the resume
must then wait for proof, and still never pay twice).

Prints, per trial: jobs left unresolved by the kill (intents without an answer), the
resume's wall time, and the emulator's charges (all jobs, each exactly once).
Target: the resume finishes in <= 10 s with a listing without lag.

    python benchmarks/resume_bench.py              # 3 trials, no lag
    python benchmarks/resume_bench.py --lag 3      # a listing 3 s behind
    python benchmarks/resume_bench.py --lost 0.2   # a fifth of the submit answers lost: the kill leaves unknowns
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

KEY = "inf_benchmark"


def start_emulator(latency: float, lag: float, lost: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "kling_pipeline.emulator", "--port", "0", "--latency", str(latency),
                             "--no-limits", "--index-lag", str(lag), "--response-lost-rate", str(lost)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, line.split()[3]


def ledger(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/_emulator/ledger", timeout=10) as answer:
        data: dict[str, Any] = json.load(answer)["data"]
        return data


def unresolved(out: Path) -> int:
    """Jobs whose last record is an intent or an unknown: their submit may have left."""
    last: dict[str, str] = {}
    for line in (out / "manifest.jsonl").read_bytes().splitlines():
        record = json.loads(line)
        if "key" in record:
            last[record["key"]] = record["t"]
    return sum(1 for t in last.values() if t in ("intent", "unknown"))


def trial(jobs: int, concurrency: int, latency: float, kill_after: float, lag: float,
          lost: float) -> dict[str, Any]:
    emulator, url = start_emulator(latency, lag, lost)
    try:
        with tempfile.TemporaryDirectory(prefix="resume-bench-") as tmp:
            recipe = Path(tmp) / "resume.yaml"
            recipe.write_text(textwrap.dedent(f"""
                version: 1
                name: resume
                app: klingai/image-o1@0pbaxv40
                matrix:
                  i: {list(range(jobs))}
                input:
                  prompt: "resume benchmark image {{{{ i }}}}"
                output:
                  dir: out
                budget:
                  max_usd: 100
                concurrency: {concurrency}
            """))
            # a result cache of its own: results paid by an earlier trial must not be served to this one
            env = {**os.environ, "INFERENCE_API_KEY": KEY, "KLING_PIPELINE_CACHE": str(Path(tmp) / "cache")}
            command = [sys.executable, "-m", "kling_pipeline", "run", str(recipe), "--base-url", url, "--no-report"]
            first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            time.sleep(kill_after)
            first.send_signal(signal.SIGKILL)
            first.wait()
            left = unresolved(Path(tmp) / "out")
            t0 = time.perf_counter()
            second = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
            wall = time.perf_counter() - t0
        charges = collections.Counter(str(c["input"]["prompt"]) for c in ledger(url)["charges"])
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)
    return {"exit": second.returncode, "unresolved": left, "wall": wall, "jobs_charged": len(charges),
            "charged_twice": sum(1 for n in charges.values() if n > 1), "stderr": second.stderr[-1500:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--lag", type=float, default=0.0, help="the listing's index lag, seconds")
    parser.add_argument("--lost", type=float, default=0.0,
                        help="share of submits whose answer the emulator loses (the task is created)")
    args = parser.parse_args()
    print(f"== N=80 C=16 L=1s, kill -9 at 2.5 s, listing lag {args.lag:g} s, lost answers {args.lost:.0%}",
          flush=True)
    walls = []
    for n in range(1, args.trials + 1):
        r = trial(80, 16, 1.0, 2.5, args.lag, args.lost)
        walls.append(r["wall"])
        print(f"   trial {n}: exit {r['exit']} · {r['unresolved']} jobs left unresolved by the kill · resume "
              f"{r['wall']:.1f} s · {r['jobs_charged']} jobs charged, {r['charged_twice']} twice", flush=True)
        if r["exit"]:
            print(r["stderr"])
    print(f"   resume wall: median {statistics.median(walls):.1f} s, max {max(walls):.1f} s (target <= 10 s "
          "without lag)")


if __name__ == "__main__":
    main()
