"""``python -m kling_pipeline.emulator``: serve the emulator until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import importlib.util
import logging
import os
import signal
import sys

from .app import create_app
from .config import EmulatorConfig, Faults, Latency
from .limits import LIMIT_CLASSES, SPEC_HELP, Limit, RateLimits, parse_limit
from .server import bind_socket, is_loopback_host, quiet_fault_noise, uvicorn_server

__all__ = ["build_parser", "config_from_args", "limits_from_args", "main"]

DEFAULT_PORT = 8765
FAULT_HELP = {
    "task_failure_rate": "probability a task fails mid-run (not billed)",
    "provider_limit_rate": "probability a task fails with Kling code 1303 (not billed)",
    "reject_rate": "probability a task is created already rejected, status 13",
    "rate_limit_rate": "probability POST /apps/run answers 429 (no task created)",
    "rate_limit_retry_after": "Retry-After seconds of an injected 429",
    "server_error_rate": "probability POST /apps/run answers 503 or 500 (no task created)",
    "server_error_retry_after": "Retry-After seconds of an injected 503",
    "max_running_per_key": "tasks running at once per key; the rest wait queued",
    "stream_cut_rate": "probability a task stream is cut before its last line",
    "download_bytes_per_second": "throttle file downloads",
    "response_lost_rate": "probability POST /apps/run creates the task but loses the answer",
    "index_lag": "seconds before a new task shows in POST /tasks/list",
    "short_list_rate": "probability that a list output holds one item fewer than billed",
}

_CALLS = {
    "runs": "limit on POST /apps/run",
    "reads": "limit on every other authenticated call: task reads and streams, listing, app, estimate, cancel",
    "uploads": "limit on POST /files (not the upload itself, not downloads)",
}


def _fault_type(name: str) -> type:
    if name in ("max_running_per_key", "download_bytes_per_second"):
        return int
    return float


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number (0-65535), got {text!r}")
    return value


def _latency(text: str) -> Latency:
    try:
        return Latency.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _limit_spec(text: str) -> str:
    try:
        parse_limit(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _burst(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"bad burst {text!r}: use a whole number of calls >= 1")
    return int(text)


def _add_limit_flags(parser: argparse.ArgumentParser) -> None:
    published = RateLimits.published()
    group = parser.add_argument_group(
        "rate limits",
        "per API key, answered with 429 and X-RateLimit-* headers; default: the service's published "
        "limits as token buckets (burst: a tenth of the count). SPEC: " + SPEC_HELP,
    )
    for kind in LIMIT_CLASSES:
        group.add_argument(
            f"--{kind}-limit",
            type=_limit_spec,
            metavar="SPEC",
            help=f"{_CALLS[kind]} (default: {published.of(kind)})",
        )
        group.add_argument(f"--{kind}-burst", type=_burst, metavar="N", help=f"bucket size of the {kind} limit")
    group.add_argument("--reset-epoch", action="store_true", help="send X-RateLimit-Reset as a Unix time")
    group.add_argument("--no-limits", action="store_true", help="no rate limits at all (throughput benchmarks)")


def limits_from_args(args: argparse.Namespace) -> RateLimits:
    """The published limits changed by ``--KIND-limit`` / ``--KIND-burst``, or none at all."""
    given = [f"--{k}-{what}" for k in LIMIT_CLASSES for what in ("limit", "burst") if getattr(args, f"{k}_{what}")]
    if args.no_limits:
        if given or args.reset_epoch:
            raise ValueError(f"--no-limits turns every limit off; it cannot go with {(given or ['--reset-epoch'])[0]}")
        return RateLimits.off()
    published = RateLimits.published()
    made: dict[str, Limit | None] = {}
    for kind in LIMIT_CLASSES:
        spec, burst = getattr(args, f"{kind}_limit"), getattr(args, f"{kind}_burst")
        limit = published.of(kind) if spec is None else parse_limit(spec)
        if burst is not None:
            if limit is None or limit.shape != "bucket":
                raise ValueError(f"--{kind}-burst needs a token-bucket --{kind}-limit, not {spec!r}")
            limit = dataclasses.replace(limit, burst=burst)
        made[kind] = limit
    return RateLimits(made["runs"], made["reads"], made["uploads"], reset_epoch=args.reset_epoch)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kling_pipeline.emulator",
        description="A local emulator of the inference.sh API (every bundled app: klingai/image-o1, video, "
        "several images, audio), with fault injection.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT,
                        help=f"0 picks a free port (default: {DEFAULT_PORT})")
    parser.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host")
    parser.add_argument(
        "--latency",
        type=_latency,
        default=Latency.fixed(0.5),
        help="task run time: SECONDS, LOW..HIGH (uniform) or lognormal:MEDIAN,SIGMA (default: 0.5)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every fault decision (default: 0)")
    parser.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="accept only the key held in this environment variable (default: any non-empty key)",
    )
    parser.add_argument("--image-scale", type=int, default=8, help="divide output pixel sizes by this (default: 8)")
    parser.add_argument("--heartbeat-interval", type=float, default=10.0, help="seconds (default: 10)")
    parser.add_argument(
        "--loop", choices=["auto", "asyncio", "uvloop"], default="auto", help="event loop (auto: uvloop if installed)"
    )
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="warning")
    faults = parser.add_argument_group("faults", "injected misbehaviour (all off by default)")
    for field in dataclasses.fields(Faults):
        faults.add_argument(
            "--" + field.name.replace("_", "-"),
            type=_fault_type(field.name),
            default=field.default,
            metavar="N",
            help=f"{FAULT_HELP[field.name]} (default: {field.default})",
        )
    _add_limit_flags(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env, "")
        if not api_key.strip():
            raise ValueError(f"--api-key-env: environment variable {args.api_key_env} is not set or empty")
    faults = Faults(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Faults)})
    return EmulatorConfig(
        latency=args.latency,
        seed=args.seed,
        api_key=api_key,
        faults=faults,
        limits=limits_from_args(args),
        image_scale=args.image_scale,
        heartbeat_interval=args.heartbeat_interval,
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.allow_remote and not is_loopback_host(args.host):
        parser.error(f"--host {args.host} is not a loopback address; add --allow-remote to serve on it")
    try:
        cfg = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    if args.loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        parser.error("--loop uvloop needs the uvloop package (pip install uvloop); --loop auto uses it when present")
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    server = uvicorn_server(create_app(cfg), loop=args.loop, log_level=args.log_level)
    # This process is the emulator's alone: move what exists now out of the cyclic GC's
    # sight and let it run less often (the state holds few cycles; pauses hurt latency).
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host

    def request_exit() -> None:
        if server.should_exit:
            server.force_exit = True
        server.request_exit()

    async def serve() -> bool:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, request_exit)
        serving = loop.create_task(server.serve(sockets=[sock]))
        while not server.started and not serving.done():  # noqa: ASYNC110 (uvicorn has no startup event)
            await asyncio.sleep(0.01)
        if server.started:
            print(f"Emulator listening on http://{host}:{port} (Ctrl-C to stop)", flush=True)
        await serving
        return bool(server.started)

    try:
        with quiet_fault_noise(), asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
            started = runner.run(serve())
    except KeyboardInterrupt:
        return 0
    finally:
        sock.close()
    return 0 if started else 1
