"""Capacity benchmark of the inference.sh emulator.

Starts ``python -m kling_pipeline.emulator --port 0 --latency L --no-limits`` in its own process,
then runs N tasks with C concurrent clients, in one or more client processes:

* ``--client sdk``: the official SDK's ``AsyncInference.run`` (wait for completion);
* ``--client httpx``: plain httpx: submit (``POST /apps/run``), follow the NDJSON
  stream to its terminal line, download the output PNG.

Prints wall time, tasks/s, the ratio to the floor ``ceil(N / C) * L``, CPU seconds
of the emulator process and of the client processes, and how much CPU the rest of
the machine used meanwhile (noise). Exit code 1 when the target ratio is missed or a
task did not complete.

    python benchmarks/emulator_bench.py                        # 2000 tasks, 256 clients, 1.0 s, SDK
    python benchmarks/emulator_bench.py --client-loop uvloop --ramp 0.3
    python benchmarks/emulator_bench.py --client httpx --procs 2

The client processes start together after importing their libraries; ``--ramp``
spreads the workers' first requests over that many seconds (a fixed latency keeps
tasks started together in lock-step waves; a ramp breaks the waves up).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import multiprocessing as mp
import os
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from multiprocessing.synchronize import Event

import httpx

APP = "klingai/image-o1"
KEY = "inf_bench"
SHARD = 4
"""httpx: concurrent workers per AsyncClient (one big pool burns CPU scanning itself)."""


@dataclass
class Tally:
    completed: int = 0
    failed: int = 0
    image_bytes: int = 0
    cpu: float = 0.0
    errors: list[str] = field(default_factory=list)


def cpu_seconds_of(pid: int) -> float:
    """utime + stime of a process (Linux /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_cpu_seconds() -> float:
    """CPU seconds spent by the whole machine (all processes, all cores) since boot."""
    with open("/proc/stat", encoding="ascii") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def start_emulator(latency: float, loop: str) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "kling_pipeline.emulator", "--port", "0", "--latency", str(latency)]
    cmd += ["--loop", loop, "--no-limits"]  # a capacity figure: the service's rate limits would be the bound
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("Emulator listening on "):
        stop_emulator(proc)
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


# ---- the httpx client ---------------------------------------------------------------
async def one_task_httpx(client: httpx.AsyncClient, label: str, tally: Tally) -> None:
    body = {"app": APP, "input": {"prompt": f"benchmark task {label}", "aspect_ratio": "1:1"}}
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


async def run_httpx(base_url: str, labels: list[str], concurrency: int, tally: Tally, shard: int, ramp: float) -> None:
    counter = iter(labels)
    limits = httpx.Limits(max_connections=shard + 2, max_keepalive_connections=shard + 2)
    headers = {"Authorization": f"Bearer {KEY}"}
    tls = ssl.create_default_context()  # one context for all clients (http:// never uses it)
    clients = [
        httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=60.0, verify=tls)
        for _ in range(math.ceil(concurrency / shard))
    ]

    async def worker(client: httpx.AsyncClient, delay: float) -> None:
        await asyncio.sleep(delay)
        for label in counter:
            try:
                await one_task_httpx(client, label, tally)
            except httpx.HTTPError as exc:
                tally.failed += 1
                tally.errors.append(f"{type(exc).__name__}: {exc}")

    try:
        async with asyncio.TaskGroup() as group:
            for w in range(concurrency):
                group.create_task(worker(clients[w // shard], ramp * w / concurrency))
    finally:
        for client in clients:
            await client.aclose()


# ---- httpx on kling-pipeline's lean transport ---------------------------------------
async def run_lean(base_url: str, labels: list[str], concurrency: int, tally: Tally, shard: int, ramp: float) -> None:
    """One httpx.AsyncClient on ``kling_pipeline.api.http11.Http11Transport`` (O(1) keep-alive
    stacks). A worker is a task at the service: it hands the download to its own task and
    submits the next one as soon as its task has finished."""
    from kling_pipeline.api.http11 import Http11Transport

    counter = iter(labels)
    client = httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60.0,
                               transport=Http11Transport(max_idle_per_origin=2 * concurrency + 16))

    async def download(uri: str) -> None:
        image = await client.get(uri)
        image.raise_for_status()
        tally.image_bytes += len(image.content)
        tally.completed += 1

    async def worker(group: asyncio.TaskGroup, delay: float) -> None:
        await asyncio.sleep(delay)
        for label in counter:
            body = {"app": APP, "input": {"prompt": f"benchmark task {label}", "aspect_ratio": "1:1"}}
            try:
                response = await client.post("/apps/run", json=body)
                response.raise_for_status()
                task_id = response.json()["data"]["id"]
                stream = await client.get(f"/tasks/{task_id}/stream")
                final = json.loads(stream.content.strip().splitlines()[-1])
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                tally.failed += 1
                tally.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            if final.get("status") != 10:
                tally.failed += 1
                tally.errors.append(f"task {task_id}: {final.get('error')}")
                continue
            group.create_task(download(final["output"]["image"]["uri"]))

    try:
        async with asyncio.TaskGroup() as group:
            for w in range(concurrency):
                group.create_task(worker(group, ramp * w / concurrency))
    finally:
        await client.aclose()


# ---- the SDK client ---------------------------------------------------------------
async def run_sdk(base_url: str, labels: list[str], concurrency: int, tally: Tally, shard: int, ramp: float) -> None:
    from inferencesh import AsyncInference

    sdk = AsyncInference(api_key=KEY, base_url=base_url)
    counter = iter(labels)

    async def worker(delay: float) -> None:
        await asyncio.sleep(delay)
        for label in counter:
            try:
                result = await sdk.run({"app": APP, "input": {"prompt": f"benchmark task {label}"}})
            except Exception as exc:  # the SDK raises RuntimeError, APIError, aiohttp errors
                tally.failed += 1
                tally.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            if result.get("status") == 10 and result.get("output"):
                tally.completed += 1
            else:
                tally.failed += 1

    async with asyncio.TaskGroup() as group:
        for w in range(concurrency):
            group.create_task(worker(ramp * w / concurrency))


RUNNERS = {"httpx": run_httpx, "lean": run_lean, "sdk": run_sdk}


def client_process(
    kind: str,
    base_url: str,
    labels: list[str],
    concurrency: int,
    options: tuple[int, float, str],
    go: Event,
    results: mp.Queue[str],
) -> None:
    """One client process: wait for the starting gun, run its share, report a Tally as JSON."""
    tally = Tally()
    gc.freeze()  # a load generator: keep the cyclic GC from pausing it every few milliseconds
    gc.set_threshold(50_000, 20, 100)
    go.wait()
    cpu0 = time.process_time()
    shard, ramp, loop = options
    job = RUNNERS[kind](base_url, labels, concurrency, tally, shard, ramp)
    if loop == "uvloop":
        import uvloop

        uvloop.run(job)
    else:
        asyncio.run(job)
    tally.cpu = time.process_time() - cpu0
    results.put(json.dumps(asdict(tally)))


def run_clients(args: argparse.Namespace, base_url: str) -> tuple[Tally, float, float]:
    """Run the client processes; returns the summed tally, the wall time and the CPU
    seconds the whole machine was busy meanwhile."""
    context = mp.get_context("spawn")
    go, results = context.Event(), context.Queue()
    labels = [str(i) for i in range(args.tasks)]
    procs = []
    for p in range(args.procs):
        share = labels[p :: args.procs]
        workers = args.concurrency // args.procs + (1 if p < args.concurrency % args.procs else 0)
        proc = context.Process(
            target=client_process,
            args=(args.client, base_url, share, workers, (args.shard, args.ramp, args.client_loop), go, results),
        )
        proc.start()
        procs.append(proc)
    time.sleep(1.0)  # let every client process import its libraries before the clock starts
    start, busy0 = time.perf_counter(), busy_cpu_seconds()
    go.set()
    tallies = [Tally(**json.loads(results.get(timeout=600))) for _ in procs]
    wall, busy = time.perf_counter() - start, busy_cpu_seconds() - busy0
    for proc in procs:
        proc.join()
    total = Tally()
    for t in tallies:
        total.completed += t.completed
        total.failed += t.failed
        total.image_bytes += t.image_bytes
        total.cpu += t.cpu
        total.errors += t.errors
    return total, wall, busy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--tasks", type=int, default=2000)
    parser.add_argument("-c", "--concurrency", type=int, default=256)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--client", choices=sorted(RUNNERS), default="sdk")
    parser.add_argument("--procs", type=int, default=2, help="client processes sharing the concurrency")
    parser.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto", help="emulator's loop")
    parser.add_argument("--client-loop", choices=["asyncio", "uvloop"], default="asyncio", help="clients' loop")
    parser.add_argument("--target", type=float, default=1.10, help="allowed wall / floor ratio")
    parser.add_argument("--shard", type=int, default=SHARD, help="httpx: concurrent workers per AsyncClient")
    parser.add_argument(
        "--ramp", type=float, default=0.0, help="seconds over which the clients start (default: all at once)"
    )
    parser.add_argument("--url", help="use an emulator already running there (its CPU is not measured)")
    args = parser.parse_args(argv)

    load = os.getloadavg()[0]
    if args.url:
        proc, base_url = None, args.url
    else:
        proc, base_url = start_emulator(args.latency, args.loop)
    try:
        emu_cpu0 = cpu_seconds_of(proc.pid) if proc else 0.0
        tally, wall, busy = run_clients(args, base_url)
        emu_cpu = cpu_seconds_of(proc.pid) - emu_cpu0 if proc else float("nan")
        ledger = httpx.get(f"{base_url}/_emulator/ledger", timeout=30).json()["data"]
    finally:
        if proc is not None:
            stop_emulator(proc)

    floor = math.ceil(args.tasks / args.concurrency) * args.latency
    ratio = wall / floor
    print(
        f"setup           : client {args.client} x {args.procs} process(es) on {args.client_loop}, "
        f"ramp {args.ramp:g} s, emulator loop {args.loop}"
    )
    print(f"machine         : {os.cpu_count()} CPUs, 1-min load average before the run {load:.2f}")
    print(f"tasks           : {args.tasks} at concurrency {args.concurrency}, latency {args.latency:g} s")
    print(f"completed       : {tally.completed} (failed {tally.failed}), image bytes {tally.image_bytes}")
    print(f"wall            : {wall:.2f} s   floor {floor:.2f} s   ratio {ratio:.3f} (target <= {args.target})")
    print(f"throughput      : {args.tasks / wall:.1f} tasks/s")
    print(f"emulator CPU    : {emu_cpu:.2f} s ({emu_cpu / wall:.0%} of one core)")
    print(f"client CPU      : {tally.cpu:.2f} s over {args.procs} process(es) ({tally.cpu / wall:.0%} of one core)")
    others = busy - tally.cpu - (0.0 if proc is None else emu_cpu)
    print(f"machine CPU     : {busy:.2f} s busy in all, {others:.2f} s of it by other processes (noise)")
    print(f"ledger          : {len(ledger['charges'])} charges, ${ledger['total_usd']}")
    for error in tally.errors[:5]:
        print(f"error           : {error}")
    ok = tally.completed == args.tasks and ratio <= args.target and len(ledger["charges"]) == args.tasks
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
