"""``webhook-receiver``: accept the service's terminal-task deliveries for an output directory."""

from __future__ import annotations

import argparse
from typing import TextIO

from ..api.client import ClientPool
from ..core.errors import UsageError
from ..run.options import RunOptions
from ..run.webhooks import Receiver, serve
from ..store.sharding import lock_name, manifest_name, parse_shard
from ..views.progress import Counters, PlainEvents
from ._backend import add_profile, backend, run_async
from ._flags import add_max_jobs, http_url, port, seconds
from ._status import resolve_target

__all__ = ["add_webhook_parser", "cmd_webhook"]


def add_webhook_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("webhook-receiver",
                       help="receive webhook deliveries of a run (--webhook), check them, collect the tasks")
    p.add_argument("target", metavar="RECIPE|OUTDIR")
    p.add_argument("--port", type=port, required=True, help="port to listen on (0: a free one, printed)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--base-url", metavar="URL", type=http_url, help="API endpoint to confirm tasks with")
    add_profile(p)
    p.add_argument("--out", metavar="DIR", help="output directory (with a RECIPE)")
    p.add_argument("--budget", metavar="USD", help="spend cap in USD")
    p.add_argument("--shard", metavar="I/N", help="this shard's manifest")
    add_max_jobs(p)
    p.add_argument("--connect-grace", type=seconds, default=30.0, metavar="S",
                   help="give a delivery up (503: the service sends it again) when the API cannot be reached "
                        "for this long (default 30)")
    p.set_defaults(func=cmd_webhook, only=[])


def cmd_webhook(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    plan, out_dir = resolve_target(args, args.target)
    if plan is None:
        raise UsageError(f"{args.target}: the recipe of this output directory is not known; give the recipe file")
    shard = parse_shard(args.shard)
    events = PlainEvents(err, Counters(0))
    options = RunOptions(concurrency=4, mode="collect", connect_grace=args.connect_grace)

    def ready(url: str) -> None:
        out.write(f"Webhook receiver listening on {url} for {out_dir} (Ctrl-C to stop)\n")
        out.flush()

    with backend(args, err) as (base_url, key):

        async def main() -> None:
            async with ClientPool(base_url, key, 4) as pool:
                receiver = Receiver(plan, pool, events, manifest=manifest_name(shard), lock=lock_name(shard),
                                    options=options)
                await serve(receiver, args.host, args.port, ready)

        try:
            run_async(main)
        except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled: the normal way to stop
            pass
    err.write("webhook receiver stopped\n")
    return 0
