"""Capacity benchmark of the inference.sh emulator.

Starts ``python -m kling_pipeline.emulator --port 0 --latency L`` in its own process,
then runs N tasks with C concurrent clients: submit (``POST /apps/run``), follow the
NDJSON stream to the terminal line, download the output image. Prints wall time,
tasks/s, the ratio to the floor ``ceil(N / C) * L``, and CPU seconds of the emulator
process and of this client process.

    python benchmarks/emulator_bench.py                      # 2000 tasks, 256 clients, 1.0 s
    python benchmarks/emulator_bench.py -n 500 -c 64 --client sdk

Target: wall <= 1.10 x floor (8.8 s for the defaults). Exit code 1 when missed or
when a task did not complete.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field

import httpx

APP = "klingai/image-o1"
KEY = "inf_bench"
SHARD = 16
"""Concurrent workers per httpx.AsyncClient (one big pool burns CPU scanning itself)."""


@dataclass
class Tally:
    completed: int = 0
    failed: int = 0
    image_bytes: int = 0
    errors: list[str] = field(default_factory=list)


def cpu_seconds_of(pid: int) -> float:
    """utime + stime of a process (Linux /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_emulator(latency: float, loop: str) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "kling_pipeline.emulator", "--port", "0", "--latency", str(latency)]
    cmd += ["--loop", loop]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("Emulator listening on "):
        proc.kill()
        proc.wait()
        raise SystemExit(f"emulator did not start: {line!r}")
    return proc, line.split()[3]


def stop_emulator(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


async def one_task_httpx(client: httpx.AsyncClient, i: int, tally: Tally) -> None:
    body = {"app": APP, "input": {"prompt": f"benchmark task {i}", "aspect_ratio": "1:1"}}
    response = await client.post("/apps/run", json=body)
    response.raise_for_status()
    task_id = response.json()["data"]["id"]
    final = None
    async with client.stream("GET", f"/tasks/{task_id}/stream") as stream:
        async for line in stream.aiter_lines():
            if not line.strip():
                continue
            update = json.loads(line)
            if update.get("status", 0) >= 10:
                final = update
                break
    if final is None or final["status"] != 10:
        tally.failed += 1
        tally.errors.append(f"task {task_id}: {final and final.get('error')}")
        return
    image = await client.get(final["output"]["image"]["uri"])
    image.raise_for_status()
    tally.image_bytes += len(image.content)
    tally.completed += 1


async def run_httpx(base_url: str, n: int, concurrency: int, tally: Tally, shard: int) -> None:
    counter = iter(range(n))
    shards = math.ceil(concurrency / shard)
    limits = httpx.Limits(max_connections=shard + 2, max_keepalive_connections=shard + 2)
    headers = {"Authorization": f"Bearer {KEY}"}
    tls = ssl.create_default_context()  # one context for all clients (http:// never uses it)
    clients = [
        httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=60.0, verify=tls)
        for _ in range(shards)
    ]

    async def worker(client: httpx.AsyncClient) -> None:
        for i in counter:
            try:
                await one_task_httpx(client, i, tally)
            except httpx.HTTPError as exc:
                tally.failed += 1
                tally.errors.append(f"{type(exc).__name__}: {exc}")

    try:
        async with asyncio.TaskGroup() as group:
            for w in range(concurrency):
                group.create_task(worker(clients[w // shard]))
    finally:
        for client in clients:
            await client.aclose()


async def run_sdk(base_url: str, n: int, concurrency: int, tally: Tally, shard: int) -> None:
    from inferencesh import AsyncInference

    sdk = AsyncInference(api_key=KEY, base_url=base_url)
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            try:
                result = await sdk.run({"app": APP, "input": {"prompt": f"benchmark task {i}"}})
            except Exception as exc:  # the SDK raises RuntimeError/APIError/aiohttp errors
                tally.failed += 1
                tally.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            if result.get("status") == 10 and result.get("output"):
                tally.completed += 1
            else:
                tally.failed += 1

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--tasks", type=int, default=2000)
    parser.add_argument("-c", "--concurrency", type=int, default=256)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--client", choices=["httpx", "sdk"], default="httpx")
    parser.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto", help="emulator's loop")
    parser.add_argument("--target", type=float, default=1.10, help="allowed wall / floor ratio")
    parser.add_argument("--shard", type=int, default=SHARD, help="httpx: concurrent workers per AsyncClient")
    parser.add_argument("--url", help="use an emulator already running there (its CPU is not measured)")
    args = parser.parse_args(argv)

    if args.url:
        proc, base_url = None, args.url
    else:
        proc, base_url = start_emulator(args.latency, args.loop)
    tally = Tally()
    try:
        emu_cpu0 = cpu_seconds_of(proc.pid) if proc else 0.0
        client_cpu0 = time.process_time()
        start = time.perf_counter()
        runner = run_httpx if args.client == "httpx" else run_sdk
        asyncio.run(runner(base_url, args.tasks, args.concurrency, tally, args.shard))
        wall = time.perf_counter() - start
        client_cpu = time.process_time() - client_cpu0
        emu_cpu = cpu_seconds_of(proc.pid) - emu_cpu0 if proc else float("nan")
        ledger = httpx.get(f"{base_url}/_emulator/ledger", timeout=30).json()["data"]
    finally:
        if proc is not None:
            stop_emulator(proc)

    floor = math.ceil(args.tasks / args.concurrency) * args.latency
    ratio = wall / floor
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"client          : {args.client}, emulator loop: {args.loop}")
    print(f"tasks           : {args.tasks} at concurrency {args.concurrency}, latency {args.latency:g} s")
    print(f"completed       : {tally.completed} (failed {tally.failed}), image bytes {tally.image_bytes}")
    print(f"wall            : {wall:.2f} s   floor {floor:.2f} s   ratio {ratio:.3f} (target <= {args.target})")
    print(f"throughput      : {args.tasks / wall:.1f} tasks/s")
    print(f"emulator CPU    : {emu_cpu:.2f} s ({emu_cpu / wall:.0%} of one core)")
    print(f"client CPU      : {client_cpu:.2f} s ({client_cpu / wall:.0%} of one core), peak RSS {peak_rss_mb:.0f} MB")
    print(f"ledger          : {len(ledger['charges'])} charges, ${ledger['total_usd']}")
    for error in tally.errors[:5]:
        print(f"error           : {error}")
    ok = tally.completed == args.tasks and ratio <= args.target and len(ledger["charges"]) == args.tasks
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
